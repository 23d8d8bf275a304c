"""Which peers may speak for a client: X-Forwarded-For and X-Forwarded-Proto count only from them.

A proxy of ours writes those headers; a client that reaches a web process directly (past the
proxy, through a hole in the firewall) can write them too, and so pick the address its
throttles and refusal records key on, and claim https. ``PASSPORT_TRUSTED_PROXIES`` lists the
networks the proxies connect from (loopback by default: nginx on the same host). From any other
peer the headers are dropped before anything reads them (a WebSocket's handshake's too:
``ForwardedHeadersAsgiMiddleware``), so Django (``SECURE_PROXY_SSL_HEADER``),
DRF (``NUM_PROXIES``), allauth (``ALLAUTH_TRUSTED_PROXY_COUNT``) and ``audit.refusals`` all see
the same thing: the client is ``REMOTE_ADDR`` and the request is plain http.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:  # settings imports this module: nothing of django.http at import time
    from django.http import HttpRequest, HttpResponse

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The request.META names of the headers only a trusted proxy may set.
FORWARDED_META = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT")
# The same headers as an ASGI scope names them (lower case, bytes).
FORWARDED_HEADERS = frozenset(name.removeprefix("HTTP_").replace("_", "-").lower().encode() for name in FORWARDED_META)


def networks_parse(value: str | Iterable[str]) -> tuple[Network, ...]:
    """``PASSPORT_TRUSTED_PROXIES`` (comma-separated CIDRs, or a list of them) as networks."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    networks: list[Network] = []
    for part in (str(part).strip() for part in parts):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"PASSPORT_TRUSTED_PROXIES: {part!r} is not a network ({exc})") from exc
    return tuple(networks)


@lru_cache(maxsize=8)
def _networks(value: tuple[str, ...]) -> tuple[Network, ...]:
    return networks_parse(value)


def peer_trusted(address: str | None) -> bool:
    """Whether the peer at ``address`` (``REMOTE_ADDR``, an ASGI scope's client) is one of our proxies."""
    try:
        ip = ipaddress.ip_address(str(address or ""))
    except ValueError:
        return False  # a unix socket or no peer at all: nothing to say it is ours
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(tuple(settings.PASSPORT_TRUSTED_PROXIES)))


class ForwardedHeadersMiddleware:
    """Drops the forwarded headers of a request whose peer is not a trusted proxy (first in the stack)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not peer_trusted(request.META.get("REMOTE_ADDR")):
            for name in FORWARDED_META:
                request.META.pop(name, None)
        return self.get_response(request)


class ForwardedHeadersAsgiMiddleware:
    """The same for a WebSocket handshake, before anything reads its scope: the CLI proxy's refusal
    records key on the client's address (terminal.proxy.auth), as ``audit.refusals`` reads it."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        client = scope.get("client") or (None, None)
        if not peer_trusted(client[0]):
            headers = [
                (name, value) for name, value in scope.get("headers", []) if name.lower() not in FORWARDED_HEADERS
            ]
            scope = {**scope, "headers": headers}
        return await self.application(scope, receive, send)
