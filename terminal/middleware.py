"""The terminal WebSocket's ticket check, as ASGI middleware before any consumer runs.

It sits behind the origin check and the session authentication (passport_portal/asgi.py). A
handshake for ``/ws/terminal/<grant>/`` goes on only for a signed-in person holding an unused,
unexpired one-time ticket (``?ticket=``) for that grant, issued by the terminal page; the
ticket is spent here, once. Anyone else is refused: 4401 without a sign-in (the ticket is left
unspent) and 4403 on a grant the person may not see, both before the socket opens; on a grant
they may see, a missing, unknown, pruned, expired or used ticket is refused with 4403 after the
socket opens, with a ``closed`` reason for the page to show and a ``terminal.refused`` in the
Logbook (``services.ticket_refusal``): a page they loaded, refused with no word, would only say
"Disconnected". What passed is put in the scope as ``terminal_grant_id`` for the consumer.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from terminal import frames, services

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
TERMINAL_PREFIX = "/ws/terminal/"
TERMINAL_PATH = re.compile(r"/ws/terminal/(?P<grant_id>[0-9]{1,18})/")
SCOPE_GRANT = "terminal_grant_id"


async def _refuse(receive: Any, send: Any, code: int) -> None:
    """Close the handshake without accepting it (the server answers the browser with a 403)."""
    message = await receive()
    if message.get("type") == "websocket.connect":
        await send({"type": "websocket.close", "code": code})


async def _refuse_saying_why(receive: Any, send: Any, code: int, reason: str) -> None:
    """Accept, send the ``closed`` reason the page shows, and close: a browser is told nothing of a
    handshake refused before it opened (its page sees a close with no code and no reason)."""
    message = await receive()
    if message.get("type") == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": frames.encode("closed", reason=reason)})
        await send({"type": "websocket.close", "code": code})


class TerminalTicketMiddleware:
    """Terminal handshakes need a one-time ticket; other WebSocket paths pass through unchanged."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope.get("type") != "websocket" or not path.startswith(TERMINAL_PREFIX):
            return await self.application(scope, receive, send)
        matched = TERMINAL_PATH.fullmatch(path)
        if matched is None:
            return await _refuse(receive, send, CLOSE_FORBIDDEN)
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            return await _refuse(receive, send, CLOSE_UNAUTHENTICATED)
        grant_id = int(matched["grant_id"])
        query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        tickets = query.get("ticket") or [""]
        token = tickets[0] if len(tickets) == 1 else ""
        if not await database_sync_to_async(services.ticket_consume)(token=token, user=user, grant_id=grant_id):
            reason = await database_sync_to_async(services.ticket_refusal)(token=token, user=user, grant_id=grant_id)
            if reason is None:
                return await _refuse(receive, send, CLOSE_FORBIDDEN)
            return await _refuse_saying_why(receive, send, CLOSE_FORBIDDEN, reason)
        return await self.application({**scope, SCOPE_GRANT: grant_id}, receive, send)
