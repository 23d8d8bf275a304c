"""The WebSocket origin check: only pages of this site may open the portal's WebSockets.

A browser sends cookies with a WebSocket handshake whatever page opens it, so the Origin
header is the only thing telling the portal's own page from another site's (cross-site
WebSocket hijacking). Channels' ``AllowedHostsOriginValidator`` compares only the host
name with ALLOWED_HOSTS, so ``http://127.0.0.1:9999`` (any other service on that host) or
plain-http pages passed for the portal. Here the whole origin, scheme, host and port, must be
one of the site's own, decided as Django's CSRF check decides it for a form POST:

- the origin of the handshake itself: its scheme (``wss`` is https; ``SECURE_PROXY_SSL_HEADER``
  counts when configured) and its Host header (which must be in ALLOWED_HOSTS), or
- one listed in CSRF_TRUSTED_ORIGINS (``PASSPORT_CSRF_TRUSTED_ORIGINS``), with Django's
  ``https://*.example.com`` form for subdomains.

No Origin (or ``null``, or more than one) is refused: browsers always send one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from passport_portal.proxies import peer_trusted


def _headers(scope: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.decode("latin1").lower(), []).append(value.decode("latin1"))
    return found


def _one(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name, [])
    return values[0] if len(values) == 1 else None


def _is_secure(scope: dict[str, Any], headers: dict[str, list[str]]) -> bool:
    """As ``HttpRequest.is_secure``: the proxy's header only when SECURE_PROXY_SSL_HEADER says to trust it,
    and only from a trusted proxy (passport_portal.proxies; the HTTP side drops it in a middleware)."""
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    client = scope.get("client") or (None, None)
    if proxy_header and peer_trusted(client[0]):
        meta_name, secure_value = proxy_header
        header = meta_name.removeprefix("HTTP_").replace("_", "-").lower()
        value = _one(headers, header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") in ("wss", "https")


def _own_host(headers: dict[str, list[str]]) -> str | None:
    """The Host of the handshake, as ``HttpRequest.get_host`` accepts it; None if not an allowed host."""
    host = _one(headers, "x-forwarded-host") if settings.USE_X_FORWARDED_HOST else None
    host = host or _one(headers, "host")
    if not host:
        return None
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    return host if domain and validate_host(domain, allowed_hosts) else None


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether this WebSocket handshake comes from a page of this site."""
    headers = _headers(scope)
    origin = _one(headers, "origin")
    if not origin or origin == "null":
        return False
    host = _own_host(headers)
    if host is not None and origin == f"{'https' if _is_secure(scope, headers) else 'http'}://{host}":
        return True
    trusted = list(settings.CSRF_TRUSTED_ORIGINS)
    if origin in [entry for entry in trusted if "*" not in entry]:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    for entry in trusted:
        if "*" in entry:
            pattern = urlsplit(entry)
            if parsed.scheme == pattern.scheme and is_same_domain(parsed.netloc, pattern.netloc.lstrip("*")):
                return True
    return False


class SameOriginValidator:
    """ASGI middleware: a WebSocket whose Origin is not one of the site's own is closed before it opens."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator is for WebSocket connections only.")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
