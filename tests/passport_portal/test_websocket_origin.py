"""Only the portal's own pages may open its WebSockets: scheme, host and port of the Origin all count.

Against the real ASGI application with Channels' WebsocketCommunicator: the terminal's socket,
with a valid session and ticket, is opened from the right origin and refused from any other,
before the consumer runs (the ticket is left unspent).
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from passport_portal.asgi import application
from passport_portal.websocket_origin import origin_allowed
from requests_app.models import AccessRequest, Grant, RequestStatus
from terminal import services
from terminal.models import TerminalTicket
from tests.conftest import World
from tests.terminal.helpers import session_cookie
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.usefixtures("live_db")


def _ended_grant(world: World) -> Grant:
    """A grant whose request has ended: the consumer accepts, says why, and closes; no cloud needed."""
    grant = make_active_grant(world)
    AccessRequest.objects.filter(pk=grant.request_id).update(status=RequestStatus.COMPLETED)
    return grant


def _opens(
    world: World, grant: Grant, *, origin: str | None, host: str = "testserver", scheme: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> bool:  # fmt: skip
    """Whether the terminal's WebSocket opens; a refused one must not have reached the consumer."""
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    raw = [(b"host", host.encode()), (b"cookie", session_cookie(world.requester).encode())]
    raw += [(b"origin", origin.encode())] if origin is not None else []
    raw += [(name.encode(), value.encode()) for name, value in headers]
    comm = WebsocketCommunicator(application, f"/ws/terminal/{grant.pk}/?ticket={ticket}", headers=raw)
    if scheme:
        comm.scope["scheme"] = scheme

    async def run() -> bool:
        connected, _ = await comm.connect(timeout=5)
        await comm.disconnect()
        return connected

    connected = async_to_sync(run)()
    spent = TerminalTicket.objects.filter(grant=grant, used_at__isnull=False).exists()
    assert connected or not spent, "refused, but only after the consumer had run"
    TerminalTicket.objects.filter(grant=grant).delete()
    return connected


def test_the_sites_own_origin_is_accepted(world: World) -> None:
    grant = _ended_grant(world)
    assert _opens(world, grant, origin="http://testserver")
    assert _opens(world, grant, origin="http://127.0.0.1:8000", host="127.0.0.1:8000")
    assert _opens(world, grant, origin="https://testserver", scheme="wss")


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://testserver", "testserver"),  # wrong scheme: an https page for an http site
        ("http://testserver:9999", "testserver"),  # wrong port
        ("http://127.0.0.1:9999", "127.0.0.1:8000"),  # another service on the portal's host
        ("http://127.0.0.1", "127.0.0.1:8000"),
        ("http://evil.example", "testserver"),  # wrong host
        ("http://testserver.evil.example", "testserver"),
        ("http://evil.example", "evil.example"),  # a host the site does not serve
        ("null", "testserver"),  # a sandboxed frame or a file
        ("", "testserver"),
        (None, "testserver"),  # no Origin at all
    ],
)
def test_any_other_origin_is_refused(world: World, origin: str | None, host: str) -> None:
    assert not _opens(world, _ended_grant(world), origin=origin, host=host)


def test_a_secure_socket_wants_an_https_origin(world: World) -> None:
    assert not _opens(world, _ended_grant(world), origin="http://testserver", scheme="wss")


def test_two_origin_headers_are_refused(world: World) -> None:
    grant = _ended_grant(world)
    assert not _opens(world, grant, origin="http://testserver", headers=(("origin", "http://evil.example"),))


def test_trusted_origins_are_accepted_with_their_scheme(world: World, settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://passport.example.com", "https://*.corp.example"]
    grant = _ended_grant(world)
    assert _opens(world, grant, origin="https://passport.example.com", host="testserver")
    assert _opens(world, grant, origin="https://eu.corp.example", host="testserver")
    assert not _opens(world, grant, origin="http://passport.example.com", host="testserver")
    assert not _opens(world, grant, origin="https://passport.example.com:8443", host="testserver")
    assert not _opens(world, grant, origin="http://eu.corp.example", host="testserver")


def _scope(origin: str, host: str = "passport.example.com", peer: str = "127.0.0.1", **headers: str) -> dict[str, Any]:
    raw = [(b"origin", origin.encode()), (b"host", host.encode())]
    raw += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": "websocket", "scheme": "ws", "headers": raw, "client": [peer, 40000]}


def test_a_proxys_forwarded_proto_counts_only_when_trusted(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["passport.example.com"]
    behind_tls = _scope("https://passport.example.com", x_forwarded_proto="https")
    settings.SECURE_PROXY_SSL_HEADER = None
    assert not origin_allowed(behind_tls)
    assert origin_allowed(_scope("http://passport.example.com", x_forwarded_proto="https"))
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(behind_tls)
    assert not origin_allowed(_scope("http://passport.example.com", x_forwarded_proto="https"))


def test_a_forwarded_proto_counts_only_from_a_trusted_proxy(settings: Any) -> None:
    """A client that reaches the web process directly cannot claim the handshake came over https."""
    settings.ALLOWED_HOSTS = ["passport.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.PASSPORT_TRUSTED_PROXIES = ["10.1.0.0/16"]
    assert origin_allowed(_scope("https://passport.example.com", peer="10.1.2.3", x_forwarded_proto="https"))
    direct = _scope("https://passport.example.com", peer="203.0.113.9", x_forwarded_proto="https")
    assert not origin_allowed(direct)
    # Its own scheme, plain ws, is what counts for it.
    assert origin_allowed(_scope("http://passport.example.com", peer="203.0.113.9", x_forwarded_proto="https"))
