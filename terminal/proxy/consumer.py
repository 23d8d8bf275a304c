"""The CLI proxy's WebSocket: ``ws/cli/requests/<request>/grants/<instance>/ssh/``.

Contract (the CLI side is passport_cli.proxy_socket):

- Handshake: ``Authorization: Bearer <token>`` (a ``passport auth login`` token), no cookie
  (one is refused before the socket opens) and no Origin needed (terminal.proxy.auth).
- Refusals: the socket is accepted, one text frame ``{"type": "refused", "reason": str}`` is sent,
  then it closes with a code from terminal.proxy.auth (4401 token, 4403 not yours or IAM,
  4404 no such grant, 4406 Windows, 4409 the account's CLI sessions are direct: fall back to the
  data channel, 4410 request not active or user not ready, 4429 the person already has as many
  sessions open as they may (terminal.slots), 4503 the portal cannot reach it).
- Then binary frames both ways are the raw bytes of the SSH connection (the portal is the SSH
  server). The CLI sends no text frames (one closes the socket with 4400).
- An admin's taking the instance's region off the account (``terminal.region_off`` on the
  request's group, or the connection's own periodic read) ends the connection: ``closed`` says why.
- An admin's change of the account's ports or destinations (``cli.forwarding_changed`` on the
  request's group) closes the open forwards no longer allowed; the connection itself stays. A lost
  message is made up for by the connection's own periodic check (terminal.proxy.upkeep).
- The end: when the SSH connection ends the portal closes with 1000; when it is ended by the
  portal (the request ended, the person signed out, the instance failed) it first sends
  ``{"type": "closed", "reason": str}`` and closes with 4000 (4503 for a failure to reach the
  instance; 4401 when the CLI's token was revoked meanwhile or reached its end). The request's
  ending reaches every open connection, a shell in it or not; a lost message is made up for by the
  refusal of each new channel and by the connection's own periodic check (terminal.proxy.session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from terminal import services, slots
from terminal.models import Client
from terminal.proxy.auth import (
    CLOSE_BAD_FRAME,
    CLOSE_TOO_MANY_SESSIONS,
    CLOSE_UNAUTHENTICATED,
    CLOSE_UNAVAILABLE,
    SCOPE_REFUSAL,
    SCOPE_SIGN_IN,
    SCOPE_SIGN_IN_ENDS,
    SCOPE_USER,
    Refusal,
    grant_for_proxy,
    token_still_live,
)
from terminal.proxy.session import ProxyConnection, as_session_reason, control
from terminal.proxy.sign_in import SignIn

logger = logging.getLogger(__name__)


class CliProxyConsumer(AsyncWebsocketConsumer):
    proxy: ProxyConnection | None = None
    joined: tuple[str, ...] = ()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # As the browser terminal: a channel-layer failure must not leave the upstream session orphaned.
        try:
            await super().__call__(scope, receive, send)
        except Exception as exc:
            logger.warning("CLI proxy consumer failed; closing its connection", exc_info=True)
            if self.proxy is not None:
                await asyncio.shield(self.proxy.end(f"Passport lost its message channel ({type(exc).__name__})."))

    # --- the Peer the proxy talks to -----------------------------------------------------------
    async def send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def send_bytes(self, data: bytes) -> None:
        await self.send(bytes_data=data)

    async def _refuse(self, refusal: Refusal) -> None:
        await self.accept()
        await self.send(text_data=control("refused", refusal.reason))
        await self.close(code=refusal.code)

    async def connect(self) -> None:
        refusal = self.scope.get(SCOPE_REFUSAL)
        user = self.scope.get(SCOPE_USER)
        if isinstance(refusal, Refusal) or user is None:
            await self._refuse(
                refusal if isinstance(refusal, Refusal) else Refusal(CLOSE_UNAUTHENTICATED, "Not signed in.")
            )
            return
        kwargs = self.scope["url_route"]["kwargs"]
        found = await database_sync_to_async(grant_for_proxy)(
            user=user, request_id=int(kwargs["request_id"]), instance_id=str(kwargs["instance_id"])
        )
        if isinstance(found, Refusal):
            await self._refuse(found)
            return
        # Before the SSH server and the Session Manager session: one person's open sessions are capped.
        try:
            slot_id = await database_sync_to_async(slots.session_slot_claim)(user=user, grant=found, client=Client.CLI)
        except slots.SessionLimitReached as refused:
            await self._refuse(Refusal(CLOSE_TOO_MANY_SESSIONS, refused.reason))
            return
        token_id = int(self.scope[SCOPE_SIGN_IN])
        sign_in = SignIn(token_id=token_id, ends_at=self.scope[SCOPE_SIGN_IN_ENDS])
        proxy = ProxyConnection(user=user, grant=found, peer=self, slot_id=slot_id, sign_in=sign_in)
        self.joined = (
            services.request_group(found.request_id),
            services.user_group(user.pk),
            services.token_group(token_id),
        )
        try:
            for group in self.joined:
                await self.channel_layer.group_add(group, self.channel_name)
            await self.accept()
        except BaseException:
            # No connection holds the slot yet: its place is free again.
            await database_sync_to_async(slots.session_slot_release)(slot_id=slot_id)
            raise
        self.proxy = proxy
        try:
            await proxy.start()
        except Exception as exc:
            logger.exception("CLI proxy on grant %s could not start", found.pk)
            await proxy.end(f"The portal could not start the SSH proxy: {type(exc).__name__}", code=CLOSE_UNAVAILABLE)
            return
        # An ending or a revocation committed while this connection opened must not be missed.
        if not await database_sync_to_async(services.terminal_still_allowed)(grant=found):
            await proxy.end("The access request has ended; this session is closed.")
        elif not await database_sync_to_async(token_still_live)(token_id):
            await proxy.end(services.SIGN_IN_REVOKED_MESSAGE, code=CLOSE_UNAUTHENTICATED)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """SSH bytes go straight to the relay; channels would first hand every frame to the one shared
        database thread (closing old connections), which the relay never touches on this path."""
        if message.get("type") == "websocket.receive" and message.get("bytes") is not None:
            if self.proxy is not None:
                await self.proxy.feed(message["bytes"])
            return
        await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.proxy is None:
            return
        if bytes_data is not None:
            await self.proxy.feed(bytes_data)
        elif text_data is not None:
            await self.proxy.end("The CLI sent a text frame; only SSH bytes are accepted.", code=CLOSE_BAD_FRAME)

    async def terminal_close(self, event: dict[str, Any]) -> None:
        """The request ended (requests_app, after commit) or the person signed out."""
        if self.proxy is not None:
            self.proxy.end_soon(as_session_reason(str(event.get("reason", "Closed."))))

    async def terminal_ca_key_retired(self, event: dict[str, Any]) -> None:
        """A CA key was retired (sshca, after commit): the connection ends if it signed its client's
        certificate or the portal's login to the instance."""
        if self.proxy is not None:
            self.proxy.ca_key_retired(str(event.get("fingerprint", "")), str(event.get("reason", "Closed.")))

    async def terminal_iam_denied(self, event: dict[str, Any]) -> None:
        """The IAM gate, asked again, refuses a person on one of the request's grants
        (terminal.services.iam_recheck): the connection ends if it is that person's on that grant."""
        if self.proxy is not None:
            self.proxy.iam_denied(**services.iam_denied_fields(event))

    async def terminal_region_off(self, event: dict[str, Any]) -> None:
        """An admin took a region off the account (terminal.services.regions, after commit): the
        connection ends if its grant's instance is there."""
        if self.proxy is not None:
            self.proxy.region_off(
                grant_ids=services.region_off_grants(event),
                region=str(event.get("region", "")),
                reason=str(event.get("reason", "Closed.")),
            )

    async def cli_sign_in_revoked(self, event: dict[str, Any]) -> None:
        """The token this connection signed in with was revoked (accounts.cli_tokens, after commit):
        closed as unauthenticated, so the CLI says to sign in again."""
        if self.proxy is not None:
            self.proxy.end_soon(str(event.get("reason", "Closed.")), code=CLOSE_UNAUTHENTICATED)

    async def cli_forwarding_changed(self, event: dict[str, Any]) -> None:
        """An admin changed the account's ports or destinations (terminal.services, after commit): the
        open ``ssh -L`` forwards whose target is no longer allowed close; the connection stays."""
        if self.proxy is not None:
            self.proxy.forwarding_changed()

    async def disconnect(self, code: int) -> None:
        if self.proxy is not None:
            await asyncio.shield(self.proxy.end("The CLI disconnected.", notify=False))
        for group in self.joined:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(group, self.channel_name)
