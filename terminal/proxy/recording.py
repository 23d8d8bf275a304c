"""Recording one session channel of the CLI proxy, exactly as the browser terminal records.

A shell or a command (exec, or a subsystem such as sftp) is a TerminalSession row with
client "cli": recording storage checked first (the same policy), asciicast in chunks, a
heartbeat, sealed complete/partial/failed with its transcript, ``terminal.started`` and
``terminal.ended`` in the Logbook (terminal.services, the only writer). The ended entry of a
command, or of a shell without a pty (``ssh -T host < script``), also carries the byte count and
SHA-256 of its output and of its input (and a command's, its command line); its recording keeps both
byte for byte (terminal.recording ``raw``). With a pty (``ssh -t host cmd``) keys typed at a prompt for a
secret that the host did not show back are withheld from the recording, as the browser terminal's are
(terminal.transcript.withhold), and from the input digest: ``input_withheld_bytes`` counts them. A
terminal (a pty) is recorded as the browser's is. The byte counts are always of the whole stream,
recorded or not. The relay closes the instance's channel before the ending begins: what the instance
sent before it saw the close is still recorded and counted (not shown to watchers), and what the client
sends from then on never reaches it and is not counted.

A file transfer (sftp, legacy scp) is not recorded byte for byte: its files are on record by digest.
When the observer gives up (``payload_resumed``), everything from then on is recorded, and the
recording is sealed partial, saying how many bytes before that were left out.
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
        environment: dict[str, str] | None = None,
        term: str | None = None,
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
        # LANG / LC_* passed on to the instance (terminal.started says which).
        self.environment = environment or {}
        # The pty's terminal type (None: no pty), TERM on the instance unless empty; in terminal.started
        # and the recording's header.
        self.term = term
        self.output_bytes = 0
        self._output_sha256 = hashlib.sha256()
        self.input_bytes = 0
        self._input_sha256 = hashlib.sha256()
        self._payload_recorded = True
        self._withholds = False
        self.unrecorded_in = 0
        self.unrecorded_out = 0
        # Files removed, renamed, linked or changed over sftp (``file.changed``), for terminal.ended.
        self.files_changed = 0

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
                environment=self.environment,
                term=self.term,
            )
        except SessionLimitReached as refused:
            self._stop(refused.reason)
            return False
        self._withholds = self.term is not None and self._payload_recorded
        self._start_recording(
            self.grant, env={"TERM": self.term} if self.term else {}, raw=self.byte_for_byte, withhold=self.withholds
        )
        if self.withholds and self.recording is not None:
            # Its input digest is of the input the recording holds: what the writer writes, in order.
            self.recording.input_written = self._input_sha256.update
        # Watchable live (terminal.live), ended from Live now through end_soon; moderated accounts wait
        # for an approver to watch (the relay holds both sides meanwhile).
        moderated = await in_db_thread(live_services.session_moderated)(grant=self.grant)
        await self._live_start(moderated=moderated, on_observers=self._observers, on_moderation=self._moderation)
        return True

    @property
    def byte_for_byte(self) -> bool:
        """A command, or a shell without a pty (``ssh -T host < script``): stdin and output may be any bytes
        (a binary the script writes out and runs), kept exactly and sealed by their digests. A terminal's
        text is kept as shown, as the browser terminal's is."""
        return self.kind == SessionKind.EXEC or self.term is None

    @property
    def withholds(self) -> bool:
        """A terminal (a pty), whose host can turn its echo off for a password: keys typed at a prompt for a
        secret that it did not show back are withheld from the recording (terminal.transcript.withhold),
        and from the input digest. Without a pty nothing is typed at a prompt: the input is a stream
        (a script, a file), kept byte for byte; so is a file transfer's."""
        return self._withholds

    @property
    def payload_recorded(self) -> bool:
        """False for a file transfer (sftp, scp): its bytes are the file's, on record as ``file.transferred``
        (path, size, SHA-256); the asciicast keeps no copy of the payload (stderr is still recorded)."""
        return self._payload_recorded

    @payload_recorded.setter
    def payload_recorded(self, recorded: bool) -> None:
        self._payload_recorded = recorded
        if not recorded and self._withholds:  # set before anything is relayed: a stream from the start
            self._withholds = False
            if self.recording is not None:
                self.recording.withhold_off()

    async def _observers(self, change: ObserversChange) -> None:
        """Who watches, told on the client's terminal (stderr, never the recording or the instance)."""
        for name in change.joined:
            await self._notify(f"{name} is watching this session.")
        for name in change.left:
            await self._notify(f"{name} stopped watching this session.")

    def output(self, data: bytes, *, payload: bool = True) -> None:
        """``payload`` False: stderr, recorded even for a file transfer."""
        self.output_bytes += len(data)
        self._output_sha256.update(data)
        if payload and not self.payload_recorded:
            self.unrecorded_out += len(data)
            return
        if self._closing:
            # The ending closed the instance's channel, and asyncssh still hands on what the instance
            # sent before it saw the close: recorded (not to watchers) until the seal begins.
            self._record_unsent_output(data)
            return
        self._record_output(data)

    def input(self, data: bytes) -> None:
        if self._closing:
            return  # the relay closed the instance's channel before its ending began: these never reach it
        self.input_bytes += len(data)
        if self.recording is None or not self.payload_recorded or not self.withholds:
            self._input_sha256.update(data)  # else as the recording writes it (``input_written``)
        if self.recording is None:
            return
        if not self.payload_recorded:
            self.unrecorded_in += len(data)
            return
        self.recording.input(data)

    @property
    def behind(self) -> bool:
        """Whether recording storage is far behind (terminal.chunks): the relay stops reading both sides."""
        return self.sink is not None and self.sink.behind

    async def caught_up(self) -> None:
        """Once storage is no longer behind, or the channel is ending."""
        await self._recording_caught_up()

    def payload_resumed(self, protocol: str, reason: str, *, late_input: bytes = b"", late_output: bytes = b"") -> str:
        """The transfer observer gave up: record everything from here on, first ``late_input`` and
        ``late_output`` (bytes it had let through but not accounted for, now recorded late; already counted
        in the byte totals); the recording will be sealed partial with the note returned (for the Logbook
        too)."""
        self.payload_recorded = True
        recorded_late = 0
        if self.recording is not None and not self._closing:
            if late_input:
                self.recording.input(late_input)
                self.unrecorded_in -= len(late_input)
            if late_output:
                self._record_output(late_output)
                self.unrecorded_out -= len(late_output)
            recorded_late = len(late_input) + len(late_output)
        late = f" ({recorded_late} bytes it held back are recorded late)" if recorded_late else ""
        self._gap = (
            f"The {protocol} observer stopped ({reason[:80]}): {self.unrecorded_in} bytes in and "
            f"{self.unrecorded_out} out before that are not in the recording, only what it reported{late}."
        )[:256]
        return self._gap

    def _byte_counts(self) -> dict[str, int]:
        """The whole stream each way, whether its bytes were recorded or not."""
        return {"bytes_in": self.input_bytes, "bytes_out": self.output_bytes}

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        if not self._closing:
            self._record_resize(cols, rows)

    def _detail_after_close(self) -> dict[str, object]:
        """The input's digest once the writer is closed: the keys it held back until then are written (or
        withheld, left out of the digest too: ``input_withheld_bytes``)."""
        detail = super()._detail_after_close()
        if self.byte_for_byte:
            detail["input_sha256"] = self._input_sha256.hexdigest()
        return detail

    async def finish(self, reason: str, *, exit_status: int | None, exit_signal: str = "") -> None:
        """Seal once: the recording, the row (with the exit status) and ``terminal.ended``."""
        if self._sealed or self.record is None or self.recording is None:
            return
        self._sealed = True
        self._closing = True
        await self._live_stop(reason)
        # Counted after the feed stopped: output that came meanwhile is recorded (``output``), and so in
        # the digests; nothing is written to the recording from here (``_seal``).
        extra: dict[str, object] = {}
        if self.byte_for_byte:
            extra = {
                **({"command": self.command} if self.kind == SessionKind.EXEC else {}),
                "output_bytes": self.output_bytes,
                "output_sha256": self._output_sha256.hexdigest(),
                "input_bytes": self.input_bytes,
            }
            if self.unrecorded_in or self.unrecorded_out:
                extra.update(unrecorded_bytes_in=self.unrecorded_in, unrecorded_bytes_out=self.unrecorded_out)
            if self.files_changed:
                extra["files_changed"] = self.files_changed
        await self._seal(reason, exit_status=exit_status, exit_signal=exit_signal, extra=extra)
