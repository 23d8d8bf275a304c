"""The browser terminal's WebSocket: connect, relay, disconnect.

Everything else is elsewhere: the origin check and session authentication in
passport_portal/asgi.py, the one-time ticket in terminal.middleware, the wire format in
terminal.frames, and the session itself (certificate, StartSession, SSH, recording, database) in
terminal.session. Signing out or the request ending reaches the open terminal through the
channel layer (``terminal.close``), sent by terminal.services after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from terminal import services
from terminal.middleware import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, SCOPE_GRANT
from terminal.session import ShellSession

logger = logging.getLogger(__name__)

# The terminal's own infrastructure failed (the channel layer, i.e. Redis): try again later.
CLOSE_UNAVAILABLE = 4503


def channel_failure_reason(exc: BaseException) -> str:
    """The ``terminal.ended`` reason when the channel layer (Redis) fails under an open terminal."""
    return f"Passport lost its message channel ({type(exc).__name__}); the terminal was closed."


class TerminalConsumer(AsyncWebsocketConsumer):
    session: ShellSession | None = None
    joined: tuple[str, ...] = ()
    accepted = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # channels' dispatch loop dies with its channel layer (Redis restarting: a ConnectionError
        # in group_add or in the task that receives from the layer) without calling disconnect;
        # the shell on the instance would live on, orphaned. End the session here instead.
        try:
            await super().__call__(scope, receive, send)
        except Exception as exc:
            logger.warning("terminal consumer failed; closing its session", exc_info=True)
            await self._end_after_failure(exc)

    async def _end_after_failure(self, exc: Exception) -> None:
        reason = channel_failure_reason(exc)
        if self.session is not None and self.accepted:
            await asyncio.shield(self.session.end(reason, code=CLOSE_UNAVAILABLE))
        else:
            # Not yet accepted: nothing was started on the instance; refuse the handshake.
            if self.session is not None:
                await asyncio.shield(self.session.end(reason, code=CLOSE_UNAVAILABLE, notify=False))
            with contextlib.suppress(Exception):
                await self.close(code=CLOSE_UNAVAILABLE)

    # --- the Browser the session talks to -------------------------------------------------
    async def send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def send_bytes(self, data: bytes) -> None:
        await self.send(bytes_data=data)

    # ``close(code)`` is AsyncWebsocketConsumer's own.

    # --- connect / relay / disconnect -----------------------------------------------------
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        grant_id = int(self.scope["url_route"]["kwargs"]["grant_id"])
        # Only terminal.middleware puts this in the scope, after spending the ticket for this grant.
        if self.scope.get(SCOPE_GRANT) != grant_id:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        session_key = getattr(self.scope.get("session"), "session_key", None)
        # The live feed joins its session group with this consumer's channel (one channel-layer
        # receiver per terminal, not two): its messages come to live_resync / live_nudge below.
        session = ShellSession(
            user=user, grant_id=grant_id, session_key=session_key, browser=self, live_channel=self.channel_name
        )
        if not await session.load():
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.session = session
        self.joined = tuple(session.channel_groups)
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.accepted = True
        session.start()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        if bytes_data is not None:
            await self.session.receive_bytes(bytes_data)
        elif text_data is not None:
            await self.session.receive_text(text_data)

    async def terminal_close(self, event: dict[str, Any]) -> None:
        """The request ended (sent by requests_app after commit) or the person signed out."""
        if self.session is not None:
            self.session.end_soon(str(event.get("reason", "Closed.")))

    async def terminal_ca_key_retired(self, event: dict[str, Any]) -> None:
        """A CA key was retired (sshca, after commit): the terminal ends if it signed the portal's
        login to the instance."""
        if self.session is not None:
            await self.session.ca_key_retired(str(event.get("fingerprint", "")), str(event.get("reason", "Closed.")))

    async def terminal_iam_denied(self, event: dict[str, Any]) -> None:
        """The IAM gate, asked again, refuses a person on one of the request's grants
        (terminal.services.iam_recheck): the terminal ends if it is that person's on that grant."""
        if self.session is not None:
            await self.session.iam_denied(**services.iam_denied_fields(event))

    async def terminal_region_off(self, event: dict[str, Any]) -> None:
        """An admin took a region off the account (terminal.services.regions, after commit): the
        terminal ends if its grant's instance is there."""
        if self.session is not None:
            await self.session.region_off(
                grant_ids=services.region_off_grants(event),
                region=str(event.get("region", "")),
                reason=str(event.get("reason", "Closed.")),
            )

    async def cli_forwarding_changed(self, event: dict[str, Any]) -> None:
        """Sent to the request's group for its CLI proxy connections (an admin changed the account's
        forwarding ports or destinations): a browser terminal carries a shell and no forwards."""

    async def live_resync(self, event: dict[str, Any]) -> None:
        """A watcher asks for a snapshot (terminal.watch): the live feed answers it."""
        await self._to_live_feed(event)

    async def live_nudge(self, event: dict[str, Any]) -> None:
        """Who watches changed: the live feed reads presence again."""
        await self._to_live_feed(event)

    async def live_moderate(self, event: dict[str, Any]) -> None:
        """The account's sessions are now moderated (terminal.live_services): the live feed holds it."""
        await self._to_live_feed(event)

    async def _to_live_feed(self, event: dict[str, Any]) -> None:
        live = self.session.live if self.session is not None else None
        if live is not None:
            await live.handle(event)

    async def disconnect(self, code: int) -> None:
        if self.session is not None:
            await asyncio.shield(self.session.end("The browser disconnected.", notify=False))
        for group in self.joined:
            # A channel-layer outage must not keep the session from being recorded as ended (above).
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(group, self.channel_name)
