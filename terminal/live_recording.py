"""The recording side of a browser terminal (terminal.session's ``ShellSession`` mixes it in).

Before the Session Manager session starts, recording storage must take a write; if it cannot,
``PASSPORT_RECORDING_UNAVAILABLE`` decides: refuse the terminal (the default) or run it
unrecorded, saying so in the Logbook. While it runs, output goes to a terminal.chunks
``ChunkSink`` (uploaded every few seconds, off the event loop) and a heartbeat says this web
process is alive; a chunk that cannot be stored applies the same policy mid-session. Storage that
falls behind (terminal.chunks ``behind``) is waited for (``_recording_caught_up``): the terminal reads
nothing more from the shell meanwhile, so the shell waits and nothing goes unrecorded. At the end,
what was kept is sealed as complete, partial or failed: the rest is waited for on the loop
(``_recording_stored``, no thread held), at most ``STORED_AT_CLOSE_SECONDS``, past which storage that
did not keep up leaves the recording partial.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from accounts.models import User
from requests_app.models import Grant
from terminal import frames, live, live_services, recorder, rounds, services
from terminal.chunks import ChunkSink
from terminal.live import LiveFeed, ObserversChange
from terminal.models import RecordingState, TerminalSession
from terminal.recording import AsciicastWriter, NullSink, clock
from terminal.storage import recording_prefix_new, storage_probe
from terminal.threads import in_db_thread, off_loop
from terminal.transcript import Transcript
from terminal.transcript.withhold import SecretInputGate

logger = logging.getLogger(__name__)

# How long the check that recording storage takes a write may take before it counts as down.
STORAGE_PROBE_SECONDS = 15
# How often a terminal waiting for its recording's storage to catch up looks again.
CATCH_UP_POLL_SECONDS = 0.05
# How long the ending waits for storage to take the rest of the recording (then again, at most as
# long, for its very last bytes, on a thread: terminal.chunks ``close_seconds``); past that the
# recording is sealed partial. Enough for BEHIND_BYTES to a working storage many times over.
STORED_AT_CLOSE_SECONDS = 60
REFUSED_UNRECORDABLE = (
    "Recording storage is unavailable, so no terminal can be opened now: every session must be recorded. "
    "Try again in a few minutes, or tell a site admin."
)
UNRECORDED_AT_START = "Recording storage is unavailable: this session is not recorded, and the Logbook says so."
UNRECORDED_FROM_NOW = "Recording storage failed: from here this session is not recorded, and the Logbook says so."
MODERATED_NOW_HELD = "This account's sessions are now moderated: this session is paused until an approver watches it."
MODERATED_NOW_WATCHED = (
    "This account's sessions are now moderated: an approver is watching, so this session runs; "
    "it pauses whenever none is."
)


class RecordingMixin:
    user: User
    record: TerminalSession | None
    recording: AsciicastWriter | None
    sink: ChunkSink | None
    # The session's live feed (terminal.live), once it is recorded; None until then.
    live: LiveFeed | None = None
    # A channel-layer channel the owner already receives on, for the feed to use (terminal.live:
    # the owner then passes the feed its messages); "" for a channel of the feed's own.
    live_channel: str = ""
    cols: int
    rows: int
    _prefix: str
    _unrecorded: str
    _closing: bool
    _loop: asyncio.AbstractEventLoop | None
    _background: set[asyncio.Task[Any]]
    # Set when part of the session's bytes were knowingly left out of the recording (the CLI proxy's
    # transfer observer gave up midway): sealed partial, with this as the note.
    _gap: str = ""
    # Set when the ending starts closing the recording (``_seal``): nothing is written to it after.
    _sealing: bool = False

    async def end(self, reason: str, *, code: int = frames.CLOSE_ENDED, notify: bool = True) -> None:
        raise NotImplementedError

    def end_soon(self, reason: str, *, code: int = frames.CLOSE_ENDED, notify: bool = True) -> None:
        raise NotImplementedError

    async def _status(self, message: str) -> None:
        raise NotImplementedError

    async def _seal(self, reason: str, **ending: Any) -> None:
        """Upload the rest, wait for it, and record the terminal as ended with what was kept.

        ``ending`` goes to terminal_session_end as is (the CLI proxy's ``exit_status`` and ``extra``)."""
        assert self.recording is not None and self.record is not None
        recording = self.recording
        self._sealing = True  # the writer is closed off the loop: no write from the loop after this
        await self._recording_stored()
        # With a ChunkSink the digest is the sink's own (of what it stored, hashed in its thread).
        await off_loop(recording.close)()
        if closed := self._detail_after_close():
            ending["extra"] = {**(ending.get("extra") or {}), **closed}
        state, note, digest, seconds, chunks = RecordingState.FAILED, self._unrecorded, "", None, None
        transcript = Transcript()
        counts = self._byte_counts()
        if self.sink is not None:
            kept = self.sink.kept()
            if kept.failure:
                state = RecordingState.PARTIAL if kept.chunks else RecordingState.FAILED
                failed = "did not keep up" if kept.gave_up else "failed"
                note = f"Recording storage {failed}; the recording stops at {clock(kept.seconds)}."
            elif self._gap:
                state, note = RecordingState.PARTIAL, self._gap
            else:
                state = RecordingState.COMPLETE
            # The chunks the digest covers: the manifest may list one more, stored but not counted.
            digest, seconds, chunks = kept.sha256, kept.seconds, kept.chunks
            if recording.lossy:
                ending["extra"] = {**(ending.get("extra") or {}), "recording_lossy": True}
                if not note:
                    note = "Bytes that were not UTF-8 are shown as U+FFFD; the recording does not keep them."
            if kept.chunks:
                transcript = await off_loop(services.recording_transcript)(session=self.record, chunks=chunks)
        await in_db_thread(services.terminal_session_end)(
            session=self.record,
            reason=reason,
            bytes_in=counts["bytes_in"],
            bytes_out=counts["bytes_out"],
            recording_sha256=digest,
            recording_state=state,
            recording_note=note,
            recorded_seconds=seconds,
            recording_chunks=chunks,
            transcript=transcript,
            **ending,
        )

    def _detail_after_close(self) -> dict[str, object]:
        """What ``terminal.ended`` says once the writer is closed: the keys it withheld (typed at a prompt
        for a secret the host did not show back, terminal.transcript.withhold), if any."""
        assert self.recording is not None
        if not self.recording.withheld_lines:
            return {}
        return {
            "input_withheld_bytes": self.recording.withheld_bytes,
            "input_withheld_lines": self.recording.withheld_lines,
        }

    # --- recording storage ------------------------------------------------------------------
    async def _storage_ready(self, grant: Grant) -> bool:
        """Check that recording storage takes a write; apply the policy if not. False: refused."""
        self._prefix = recording_prefix_new()
        try:
            await asyncio.wait_for(off_loop(storage_probe)(self._prefix), STORAGE_PROBE_SECONDS)
            return True
        except Exception as exc:
            problem = str(exc) or type(exc).__name__
            logger.warning("recording storage unavailable for a terminal on grant %s: %s", grant.pk, problem)
        if settings.PASSPORT_RECORDING_UNAVAILABLE != "allow":
            await in_db_thread(services.terminal_refused_unrecordable)(user=self.user, grant=grant, problem=problem)
            await self.end(REFUSED_UNRECORDABLE)
            return False
        self._unrecorded = f"Not recorded: recording storage was unavailable when it opened ({problem})."[:256]
        await self._status(UNRECORDED_AT_START)
        return True

    def _start_recording(
        self, grant: Grant, *, env: dict[str, str], timer: bool = True, raw: bool = False, withhold: bool = True
    ) -> None:
        """Record from here on; ``env``: the header's (TERM as the instance has it, none without a pty);
        ``timer=False``: the owner calls ``_recording_tick`` every PASSPORT_RECORDING_CHUNK_SECONDS itself
        (from a periodic task it already has); ``raw``: keep bytes that are not UTF-8 as they were
        (terminal.recording, a command's stdin and output); ``withhold``: a terminal (a pty), whose keys
        typed at a prompt for a secret that the host did not show back are withheld
        (terminal.transcript.withhold)."""
        assert self.record is not None
        target: Any
        if self._unrecorded:
            target = NullSink()
        else:
            self.sink = target = ChunkSink(
                recorder.chunk_store_for(session_id=self.record.pk, prefix=self._prefix),
                max_bytes=settings.PASSPORT_RECORDING_CHUNK_BYTES,
                attempts=settings.PASSPORT_RECORDING_UPLOAD_ATTEMPTS,
                on_failure=self._storage_failed_threadsafe,
                on_idle=recorder.upload_thread_exit,
                close_seconds=STORED_AT_CLOSE_SECONDS,
            )
        self.recording = AsciicastWriter(
            target,
            cols=self.cols,
            rows=self.rows,
            title=f"{grant.username}@{grant.instance.instance_id}",
            env=env,
            raw=raw,
            gate=SecretInputGate() if withhold else None,
        )
        if timer:
            self._spawn(self._recording_timer())

    async def _recording_caught_up(self) -> None:
        """Return once the recording's storage is not behind (terminal.chunks ``behind``), or the
        ending began. Rarely waits: only while storage is much slower than the terminal (the upload
        thread's retries and timeouts bound how long; a chunk given up on ends the waiting)."""
        while self.sink is not None and self.sink.behind and not self._closing:
            await asyncio.sleep(CATCH_UP_POLL_SECONDS)

    async def _recording_stored(self) -> None:
        """At the ending: send what is waiting and wait, on the loop (a thread waiting for each ending
        would take the process's shared executor while storage is busy), until storage took it all or
        gave up; past ``STORED_AT_CLOSE_SECONDS`` give up on the rest (sealed partial)."""
        sink = self.sink
        if sink is None:
            return
        sink.cut()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STORED_AT_CLOSE_SECONDS
        while sink.waiting and not sink.failed:
            if loop.time() >= deadline:
                sink.give_up()
                return
            await asyncio.sleep(CATCH_UP_POLL_SECONDS)

    def _byte_counts(self) -> dict[str, int]:
        assert self.recording is not None
        return {"bytes_in": self.recording.bytes_in, "bytes_out": self.recording.bytes_out}

    # --- what is recorded, also to watchers (terminal.live) ------------------------------------
    def _record_output(self, data: bytes) -> None:
        """Output as handed to the person: into the recording and, live, to whoever watches."""
        if self.recording is not None:
            self.recording.output(data)
        if self.live is not None:
            self.live.output(data)

    def _record_unsent_output(self, data: bytes) -> None:
        """Output read from the instance once the ending began, which nobody will be shown (the
        browser terminal's read waiting for the page or for an approver, or read after; what the CLI
        proxy's instance sent before it saw its channel close): still the instance's output, so into
        the recording, unless the ending already began sealing it. Not to watchers: their feed is
        stopping. Never raises."""
        if self.recording is None or self._sealing:
            return
        try:
            self.recording.output(data)
        except Exception:
            logger.warning("terminal output waiting at the close was not recorded", exc_info=True)

    def _record_resize(self, cols: int, rows: int) -> None:
        if self.recording is not None:
            self.recording.resize(cols, rows)
        if self.live is not None:
            self.live.resize(cols, rows)

    async def _live_start(
        self,
        *,
        moderated: bool,
        on_observers: Callable[[ObserversChange], Awaitable[None]] | None = None,
        on_moderation: Callable[[str], Awaitable[None]] | None = None,
    ) -> LiveFeed:
        """Once the session is recorded: watchable live; ended from Live now with ``end_soon``."""
        assert self.record is not None
        self.live = LiveFeed(
            session_id=self.record.pk,
            moderated=moderated,
            cols=self.cols,
            rows=self.rows,
            on_observers=on_observers,
            on_moderation=on_moderation,
            on_close=self.end_soon,
            on_moderated=self._moderation_applied,
            channel=self.live_channel,
        )
        await self.live.start()
        return self.live

    async def _moderation_applied(self, state: str) -> None:
        """The account's sessions became moderated while this one runs (terminal.live ``moderate``;
        the feed already holds it unless an approver watches): on record, and told to the person."""
        assert self.record is not None
        held = state != live.RUNNING
        try:
            await in_db_thread(live_services.session_moderation_applied)(session=self.record, held=held)
        except Exception:
            logger.warning("terminal %s: moderation applied, not on record", self.record.pk, exc_info=True)
        await self._moderation_notice(MODERATED_NOW_HELD if held else MODERATED_NOW_WATCHED)

    async def _moderation_notice(self, message: str) -> None:
        """How the person is told that moderation now applies (the browser terminal: a notice)."""
        await self._status(message)

    async def _live_stop(self, reason: str) -> None:
        if self.live is not None:
            await self.live.stop(reason)

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _recording_timer(self) -> None:
        """Every few seconds, ``_recording_tick``."""
        while not self._closing:
            await asyncio.sleep(settings.PASSPORT_RECORDING_CHUNK_SECONDS)
            if self._closing:
                return
            await self._recording_tick()

    async def _recording_tick(self) -> None:
        """Send what is waiting as a chunk, and say this web process is alive."""
        assert self.record is not None
        if self.sink is not None:
            self.sink.cut()
        try:
            counts = {} if self.recording is None else self._byte_counts()
            # With every other open terminal's, in one UPDATE (terminal.rounds).
            await rounds.heartbeat(recorder.Heartbeat(session_id=self.record.pk, **counts))
        except Exception:
            logger.warning("terminal %s: heartbeat not written", self.record.pk, exc_info=True)

    def _storage_failed_threadsafe(self, problem: str) -> None:
        """From the upload thread: a chunk could not be stored after every try."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._storage_failed, problem)

    def _storage_failed(self, problem: str) -> None:
        if self._closing or self.record is None or self.sink is None:
            return
        seconds = self.sink.kept().seconds
        allow = settings.PASSPORT_RECORDING_UNAVAILABLE == "allow"
        self._spawn(
            in_db_thread(services.terminal_recording_stopped)(
                session=self.record, problem=problem, seconds=seconds, continues=allow
            )
        )
        if allow:
            self._spawn(self._status(UNRECORDED_FROM_NOW))
            return
        self.end_soon(
            "The recording storage failed, so this terminal was closed: every session must be recorded. "
            f"What was recorded up to {clock(seconds)} is kept."
        )
