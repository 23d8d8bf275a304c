"""The browser terminal's WebSocket.

Frames, browser -> server: binary = keystrokes/paste as UTF-8 bytes; text = JSON
``{"type": "resize", "cols": int, "rows": int}`` or ``{"type": "input", "data": str}``.
Server -> browser: binary = terminal output bytes; text = JSON ``{"type": "status", "message": str}``
while connecting, ``{"type": "ready"}`` once the shell runs, and ``{"type": "closed", "reason": str}``
just before the server closes the socket.

Authentication is the session (AuthMiddlewareStack) behind an origin check (asgi.py) plus a
one-time ticket from the terminal page (``?ticket=``), consumed on connect. Signing out closes
every terminal of the person (the per-user group, terminal.signals); a terminal whose browser
session disappears any other way closes at its next session check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.models import User
from requests_app.errors import NotAllowed, RequestRuleError
from requests_app.models import Grant
from requests_app.services import grant_issue_certificate, grant_start_session
from terminal import services
from terminal.bridge import SshBridge, ephemeral_key
from terminal.models import TerminalSession
from terminal.recording import AsciicastWriter

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_ENDED = 4000
MAX_COLS, MAX_ROWS = 1000, 500
# How often an open terminal checks that its browser session still exists (signed out elsewhere,
# flushed, expired); the sign-out signal closes it at once, this catches every other way.
SESSION_CHECK_SECONDS = 3
DEFAULT_COLS, DEFAULT_ROWS = 80, 24


def _load_grant(grant_id: int) -> Grant:
    return Grant.objects.select_related("instance", "request__account", "request__requester").get(pk=grant_id)


class TerminalConsumer(AsyncWebsocketConsumer):
    grant_id: int
    user: User
    grant: Grant | None = None
    bridge: SshBridge | None = None
    recording: AsciicastWriter | None = None
    session: TerminalSession | None = None
    ssm_session_id: str = ""
    group: str = ""
    user_group: str = ""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.grant_id = int(self.scope["url_route"]["kwargs"]["grant_id"])
        query = parse_qs(self.scope.get("query_string", b"").decode())
        token = (query.get("ticket") or [""])[0]
        if not await database_sync_to_async(services.ticket_consume)(token=token, user=user, grant_id=self.grant_id):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.grant = await database_sync_to_async(_load_grant)(self.grant_id)
        self.group = services.request_group(self.grant.request_id)
        self.user_group = services.user_group(user.pk)
        session = self.scope.get("session")
        self._session_key = getattr(session, "session_key", None)
        self._closing = False
        self._ended = asyncio.Event()
        self._last_input = time.monotonic()
        self._cols, self._rows = DEFAULT_COLS, DEFAULT_ROWS
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.accept()
        self._runner = asyncio.create_task(self._run(), name=f"terminal-{self.grant_id}")
        self._session_watcher = asyncio.create_task(self._session_watch(), name=f"terminal-session-{self.grant_id}")

    # --- the session ------------------------------------------------------------------
    async def _status(self, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "status", "message": message}))

    async def _run(self) -> None:
        assert self.grant is not None
        grant = self.grant
        try:
            reason = await database_sync_to_async(services.terminal_unavailable_reason)(grant=grant, user=self.user)
            if reason:
                await self.shutdown(reason)
                return
            key, public_key = ephemeral_key()
            try:
                certificates = await database_sync_to_async(grant_issue_certificate)(
                    grant=grant, user=self.user, public_key=public_key
                )
            except (NotAllowed, RequestRuleError) as exc:
                await self.shutdown(f"The certificate was refused: {exc}")
                return
            await self._status("Starting a Session Manager session…")
            try:
                started = await database_sync_to_async(grant_start_session)(
                    grant=grant, user=self.user, document=services.SSH_DOCUMENT, port=22, via="terminal"
                )
            except RequestRuleError as exc:
                await self.shutdown(f"The session could not start: {exc}")
                return
            self.ssm_session_id = started["SessionId"]
            bridge = SshBridge(
                stream_url=started["StreamUrl"],
                token=started["TokenValue"],
                username=grant.username,
                key=key,
                certificates=certificates,
            )
            self.bridge = bridge
            await self._status(f"Logging in as {grant.username}…")
            await bridge.open(cols=self._cols, rows=self._rows)
            relative = services.recording_relative_path(grant=grant)
            self.recording = AsciicastWriter(
                services.recording_absolute_path(relative),
                cols=self._cols,
                rows=self._rows,
                title=f"{grant.username}@{grant.instance.instance_id}",
            )
            self.session = await database_sync_to_async(services.terminal_session_start)(
                user=self.user, grant=grant, ssm_session_id=self.ssm_session_id, recording_path=relative
            )
            if not await database_sync_to_async(services.terminal_still_allowed)(grant=grant):
                await self.shutdown("The access request has ended; this terminal is closed.")
                return
            await self.send(text_data=json.dumps({"type": "ready"}))
            idle = asyncio.create_task(self._idle_watch())
            try:
                await bridge.pump_output(self._deliver)
            finally:
                idle.cancel()
            await self.shutdown("The shell ended.")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("terminal on grant %s failed", self.grant_id)
            await self.shutdown(f"The connection to the instance failed: {exc}")

    async def _deliver(self, data: bytes) -> None:
        if self._closing:
            return
        # Recorded at the moment it is handed to the socket: the recording holds what was sent.
        if self.recording is not None:
            self.recording.output(data)
        await self.send(bytes_data=data)

    async def _idle_watch(self) -> None:
        limit = settings.PASSPORT_TERMINAL_IDLE_SECONDS
        while True:
            remaining = limit - (time.monotonic() - self._last_input)
            if remaining <= 0:
                asyncio.get_running_loop().create_task(self.shutdown(f"Closed after {limit} seconds without input."))
                return
            await asyncio.sleep(min(remaining, 5))

    async def _session_watch(self) -> None:
        while not self._closing:
            await asyncio.sleep(SESSION_CHECK_SECONDS)
            signed_in = await database_sync_to_async(services.terminal_session_signed_in)(
                session_key=self._session_key, user_id=self.user.pk
            )
            if not signed_in and not self._closing:
                asyncio.get_running_loop().create_task(self._close_and_stop(services.SIGNED_OUT_MESSAGE))
                return

    async def shutdown(self, reason: str, *, notify: bool = True) -> None:
        """End everything once: the shell, the data channel, the SSM session, the recording, the socket."""
        if self._closing:
            await self._ended.wait()
            return
        self._closing = True
        watcher = getattr(self, "_session_watcher", None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        try:
            if notify:
                with contextlib.suppress(Exception):
                    await self.send(text_data=json.dumps({"type": "closed", "reason": reason}))
                    await self.close(code=CLOSE_ENDED)
            if self.bridge is not None:
                await self.bridge.close()
            if self.ssm_session_id and self.grant is not None:
                try:
                    await sync_to_async(services.ssh_session_terminate, thread_sensitive=False)(
                        grant=self.grant, ssm_session_id=self.ssm_session_id
                    )
                except Exception:
                    logger.warning("TerminateSession %s failed", self.ssm_session_id, exc_info=True)
            if self.recording is not None and self.session is not None:
                digest = await sync_to_async(self.recording.close, thread_sensitive=False)()
                await database_sync_to_async(services.terminal_session_end)(
                    session=self.session,
                    reason=reason,
                    bytes_in=self.recording.bytes_in,
                    bytes_out=self.recording.bytes_out,
                    recording_sha256=digest,
                )
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self.group, self.channel_name)
                await self.channel_layer.group_discard(self.user_group, self.channel_name)
        finally:
            self._ended.set()

    # --- browser -> server ------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closing:
            return
        if bytes_data is not None:
            self._input(bytes_data)
            return
        try:
            message: Any = json.loads(text_data or "")
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "input" and isinstance(message.get("data"), str):
            self._input(message["data"].encode("utf-8"))
        elif message.get("type") == "resize":
            try:
                cols = max(1, min(MAX_COLS, int(message["cols"])))
                rows = max(1, min(MAX_ROWS, int(message["rows"])))
            except (KeyError, TypeError, ValueError):
                return
            self._cols, self._rows = cols, rows
            if self.bridge is not None and self.recording is not None:
                self.recording.resize(cols, rows)
                self.bridge.resize(cols, rows)

    def _input(self, data: bytes) -> None:
        self._last_input = time.monotonic()
        if self.bridge is None or self.recording is None:
            return  # not logged in yet: keystrokes before the prompt are dropped
        self.recording.input(data)
        self.bridge.write(data)

    # --- channel layer ----------------------------------------------------------------
    async def terminal_close(self, event: dict[str, Any]) -> None:
        """The request ended (sent by requests_app after commit) or the person signed out."""
        asyncio.get_running_loop().create_task(self._close_and_stop(str(event.get("reason", "Closed."))))

    async def _close_and_stop(self, reason: str) -> None:
        await self.shutdown(reason)
        runner = getattr(self, "_runner", None)
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "_closing"):
            return  # refused before accept
        await self.shutdown("The browser disconnected.", notify=False)
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
