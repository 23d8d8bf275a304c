"""Recording one session channel of the CLI proxy, exactly as the browser terminal records.

A shell or a command (exec, or a subsystem such as sftp) is a TerminalSession row with
client "cli": recording storage checked first (the same policy), asciicast in chunks, a
heartbeat, sealed complete/partial/failed with its transcript, ``terminal.started`` and
``terminal.ended`` in the Logbook (terminal.services, the only writer). A command's ended
entry also carries its exit status and the byte count and SHA-256 of its output.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from accounts.models import User
from requests_app.models import Grant
from terminal import frames, live_services, services
from terminal.chunks import ChunkSink
from terminal.live import ObserversChange
from terminal.live_recording import RecordingMixin
from terminal.models import Client, SessionKind, TerminalSession
from terminal.recording import AsciicastWriter
from terminal.slots import SessionLimitReached
from terminal.threads import in_db_thread


class ChannelRecording(RecordingMixin):
    """The record and recording of one SSH session channel through the proxy."""

    def __init__(
        self,
        *,
        user: User,
        grant: Grant,
        ssm_session_id: str,
        kind: str,
        command: str,
        cols: int,
        rows: int,
        notify: Callable[[str], Awaitable[None]],
        stop: Callable[[str], None],
        moderation: Callable[[str], Awaitable[None]],
        slot_id: int | None = None,
    ) -> None:
        self.user = user
        self.grant = grant
        self.ssm_session_id = ssm_session_id
        self.kind = kind
        self.command = command
        self.cols, self.rows = cols, rows
        self.record: TerminalSession | None = None
        self.recording: AsciicastWriter | None = None
        self.sink: ChunkSink | None = None
        self._prefix = ""
        self._unrecorded = ""
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._notify = notify
        self._stop = stop
        self._moderation = moderation
        # The connection's place under the cap (terminal.slots), which the row names (connection_slot).
        self._slot_id = slot_id
        self._sealed = False
        self.output_bytes = 0
        self._output_sha256 = hashlib.sha256()
        # False for a file transfer (sftp, scp): its bytes are the file's, on record as ``file.transferred``
        # (path, size, SHA-256); the asciicast keeps no copy of the payload.
        self.payload_recorded = True

    # --- what RecordingMixin asks of its owner ---------------------------------------------
    async def end(self, reason: str, *, code: int = frames.CLOSE_ENDED, notify: bool = True) -> None:
        self.end_soon(reason, code=code, notify=notify)

    def end_soon(self, reason: str, *, code: int = frames.CLOSE_ENDED, notify: bool = True) -> None:
        self._stop(reason)

    async def _status(self, message: str) -> None:
        await self._notify(message)

    # --- the channel's life ------------------------------------------------------------------
    async def begin(self) -> bool:
        """Check storage (policy), write the row and ``terminal.started``; False: refused (by the
        recording policy, or by the cap on open sessions for a connection's further channels)."""
        self._loop = asyncio.get_running_loop()
        if not await self._storage_ready(self.grant):
            return False
        try:
            self.record = await in_db_thread(services.terminal_session_start)(
                user=self.user,
                grant=self.grant,
                ssm_session_id=self.ssm_session_id,
                recording_path=self._prefix,
                unrecorded=self._unrecorded,
                client=Client.CLI,
                kind=self.kind,
                command=self.command,
                slot_id=self._slot_id,
            )
        except SessionLimitReached as refused:
            self._stop(refused.reason)
            return False
        self._start_recording(self.grant)
        # Watchable live (terminal.live), ended from Live now through end_soon; moderated accounts wait
        # for an approver to watch (the relay holds both sides meanwhile).
        moderated = await in_db_thread(live_services.session_moderated)(grant=self.grant)
        await self._live_start(moderated=moderated, on_observers=self._observers, on_moderation=self._moderation)
        return True

    async def _observers(self, change: ObserversChange) -> None:
        """Who watches, told on the client's terminal (stderr, never the recording or the instance)."""
        for name in change.joined:
            await self._notify(f"{name} is watching this session.")
        for name in change.left:
            await self._notify(f"{name} stopped watching this session.")

    def output(self, data: bytes) -> None:
        self.output_bytes += len(data)
        self._output_sha256.update(data)
        if not self._closing and self.payload_recorded:
            self._record_output(data)

    def input(self, data: bytes) -> None:
        if self.recording is not None and not self._closing and self.payload_recorded:
            self.recording.input(data)

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        if not self._closing:
            self._record_resize(cols, rows)

    async def finish(self, reason: str, *, exit_status: int | None, exit_signal: str = "") -> None:
        """Seal once: the recording, the row (with the exit status) and ``terminal.ended``."""
        if self._sealed or self.record is None or self.recording is None:
            return
        self._sealed = True
        self._closing = True
        extra: dict[str, object] = {}
        if self.kind == SessionKind.EXEC:
            extra = {
                "command": self.command,
                "output_bytes": self.output_bytes,
                "output_sha256": self._output_sha256.hexdigest(),
            }
        if exit_signal:
            extra["exit_signal"] = exit_signal
        await self._live_stop(reason)
        await self._seal(reason, exit_status=exit_status, extra=extra)
