"""The ticket middleware refuses before any consumer runs (saying why to a person on a grant they may
see); the consumer refuses a scope it did not pass."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path
from django.utils import timezone

from terminal import services
from terminal.consumers import TerminalConsumer
from terminal.middleware import SCOPE_GRANT, TerminalTicketMiddleware
from terminal.models import TerminalTicket
from tests.conftest import World
from tests.terminal.helpers import ORIGIN, session_cookie
from tests.terminal.test_consumers import make_active_grant

# The middleware reads tickets through database_sync_to_async: committed data, as in production.
pytestmark = pytest.mark.usefixtures("live_db")


class InnerApplication:
    """Stands where the consumer is: remembers every scope that reached it, and accepts."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await receive()
        await send({"type": "websocket.accept"})
        await receive()


def handshake(application: Any, path: str, cookie: str | None) -> tuple[bool, int | None]:
    """(True, None) when the handshake reached the inner application; else (False, the close code),
    whether refused before the socket opened or after it (then with the ``closed`` reason first)."""
    headers = [(b"origin", ORIGIN.encode()), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))

    async def run() -> tuple[bool, int | None]:
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await comm.connect(timeout=5)
        if not connected:
            return connected, code
        if await comm.receive_nothing(timeout=0.2):
            await comm.disconnect()
            return True, None
        closed = json.loads((await comm.receive_output(timeout=5))["text"])
        assert closed["type"] == "closed" and closed["reason"]
        close = await comm.receive_output(timeout=5)
        assert close["type"] == "websocket.close"
        return False, close["code"]

    return async_to_sync(run)()


def test_a_bad_or_used_ticket_never_reaches_the_consumer(world: World) -> None:
    inner = InnerApplication()
    application = AuthMiddlewareStack(TerminalTicketMiddleware(inner))
    grant = make_active_grant(world)
    cookie = session_cookie(world.requester)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    base = f"/ws/terminal/{grant.pk}/"

    assert handshake(application, f"{base}?ticket={ticket}", None) == (False, 4401)  # not signed in
    assert handshake(application, base, cookie) == (False, 4403)  # no ticket
    assert handshake(application, f"{base}?ticket=made-up", cookie) == (False, 4403)
    assert handshake(application, f"{base}?ticket={ticket}&ticket={ticket}", cookie) == (False, 4403)
    assert handshake(application, f"/ws/terminal/{grant.pk + 1}/?ticket={ticket}", cookie) == (False, 4403)
    assert handshake(application, f"/ws/terminal/{'9' * 30}/?ticket={ticket}", cookie) == (False, 4403)
    assert handshake(application, f"{base}?ticket={ticket}", session_cookie(world.member)) == (False, 4403)
    assert inner.scopes == []
    assert TerminalTicket.objects.get().used_at is None

    # The right person with the right ticket: spent, and the consumer learns for which grant.
    assert handshake(application, f"{base}?ticket={ticket}", cookie) == (True, None)
    assert len(inner.scopes) == 1 and inner.scopes[0][SCOPE_GRANT] == grant.pk
    assert TerminalTicket.objects.get().used_at is not None
    # Used once: never again.
    assert handshake(application, f"{base}?ticket={ticket}", cookie) == (False, 4403)
    assert len(inner.scopes) == 1


def test_an_expired_ticket_never_reaches_the_consumer(world: World) -> None:
    inner = InnerApplication()
    grant = make_active_grant(world)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    TerminalTicket.objects.update(expires_at=timezone.now())
    path_ = f"/ws/terminal/{grant.pk}/?ticket={ticket}"
    application = AuthMiddlewareStack(TerminalTicketMiddleware(inner))
    assert handshake(application, path_, session_cookie(world.requester)) == (False, 4403)
    assert inner.scopes == []


def test_other_websocket_paths_pass_through_untouched(world: World) -> None:
    inner = InnerApplication()
    application = AuthMiddlewareStack(TerminalTicketMiddleware(inner))
    assert handshake(application, "/ws/other/", None) == (True, None)
    assert len(inner.scopes) == 1 and SCOPE_GRANT not in inner.scopes[0]


def test_the_consumer_refuses_a_scope_the_middleware_did_not_pass(world: World) -> None:
    # Wired without the middleware, a signed-in person with no ticket check at all is still refused.
    grant = make_active_grant(world)
    application = AuthMiddlewareStack(URLRouter([path("ws/terminal/<int:grant_id>/", TerminalConsumer.as_asgi())]))
    assert handshake(application, f"/ws/terminal/{grant.pk}/", session_cookie(world.requester)) == (False, 4403)
