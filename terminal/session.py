"""One browser terminal from start to end, with no Channels in it.

``ShellSession`` loads the grant, gets a certificate for a key that never leaves memory (and an
RSA one if the instance refuses Ed25519: terminal.bridge.LoginKeys), starts
a Session Manager session (AWS-StartSSHSession), logs in with asyncssh over the data channel,
records every byte and writes the session's start and end to the database and the Logbook.
What it says to the browser goes through a ``Browser`` (terminal.frames: its envelopes, output
as bytes, a close code); what the browser says comes in through ``receive_text`` and
``receive_bytes``. The WebSocket consumer is one ``Browser``; tests drive it with another.

Flow control (terminal.flow): every frame sent is counted, with a ``mark`` every so often that the
page acknowledges. Past ``MAX_UNACKED`` unacknowledged, the shell's output is no longer read (its
SSH channel's window closes and the shell on the instance blocks, as on a slow terminal); nothing
is dropped, and it is recorded as it is sent. Input still reaches the shell meanwhile (Ctrl-C). A
page that stays behind for long is closed (terminal.session_checks.STALLED_SECONDS).

Input has a window of its own (terminal.flow), kept in terminal.session_input: the page is told how
much was ``taken``, and a client past the window is closed. Storage falling behind on the recording
holds both the output and the ``taken`` until it catches up (terminal.live_recording).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import Http404

from accounts.models import User
from core.errors import NotAllowed, RequestRuleError
from core.text import visible
from requests_app.models import Grant
from requests_app.selectors import grant_get_for_session
from requests_app.services import grant_start_session
from ssmchannel.documents import SSH_DOCUMENT
from ssmchannel.waiting import cancel_and_wait
from terminal import frames, live_services, services, slots
from terminal.bridge import TERM_TYPE, LoginKeys, SshBridge
from terminal.chunks import ChunkSink
from terminal.expiry import ExpiryWatch
from terminal.flow import AckWindow
from terminal.frames import Browser
from terminal.live_recording import RecordingMixin
from terminal.login_keys import grant_login_keys
from terminal.models import Client, TerminalSession
from terminal.recording import AsciicastWriter
from terminal.session_checks import SessionChecks
from terminal.session_input import INPUT_NOT_TAKEN as INPUT_NOT_TAKEN  # where it was first; its module's now
from terminal.session_input import InputWindow
from terminal.threads import in_db_thread

logger = logging.getLogger(__name__)

DEFAULT_COLS, DEFAULT_ROWS = 80, 24
# How long the ending waits for a step of the start under way (``_unabandoned``); past it, the sweep's.
STARTING_WAIT_SECONDS = 30


class ShellSession(SessionChecks, RecordingMixin, InputWindow):
    """A PTY shell on one grant's instance for one person, recorded, until ``end``."""

    def __init__(
        self, *, user: User, grant_id: int, session_key: str | None, browser: Browser, live_channel: str = ""
    ) -> None:
        self.user = user
        self.live_channel = live_channel
        self.grant_id = grant_id
        self.browser = browser
        self._session_key = session_key
        self.grant: Grant | None = None
        self.bridge: SshBridge | None = None
        self.recording: AsciicastWriter | None = None
        self.sink: ChunkSink | None = None
        self._prefix = ""
        self._unrecorded = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.record: TerminalSession | None = None
        self.ssm_session_id = ""
        self.login_keys: LoginKeys | None = None  # whose ``signers`` ``ca_key_retired`` reads
        # This terminal's place under the cap on open sessions while it opens (terminal.slots).
        self._slot_id: int | None = None
        self.cols, self.rows = DEFAULT_COLS, DEFAULT_ROWS
        self._last_input = time.monotonic()
        self._closing = False
        self._run_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._shell_running = False  # logged in and reading output: idle and end-time checks apply
        self._expiry = ExpiryWatch()
        self._next_expiry = 0.0
        self._next_chunk = 0.0  # when the recording's next chunk is cut (once recording)
        self._teardown_task: asyncio.Task[None] | None = None
        self._starting: asyncio.Future[None] | None = None  # the step of the start under way
        self._settled = False  # the ending waits for no step begun from now on: none may begin
        self._window = AckWindow()  # sent to the browser and not yet acknowledged (terminal.flow)
        self._acked: asyncio.Future[None] | None = None  # the output waits for an ack
        self.behind_since: float | None = None  # since when the output waits (checked by _watch)

    # --- lifecycle ------------------------------------------------------------------------
    async def load(self) -> bool:
        """Load the grant through the requests selectors; False if this person may not see it."""
        try:
            self.grant = await in_db_thread(grant_get_for_session)(user=self.user, pk=self.grant_id)
        except Http404:
            return False
        return True

    @property
    def channel_groups(self) -> list[str]:
        """Who may tell this terminal to close: its request's ending, and its person signing out."""
        assert self.grant is not None, "load() first"
        return [services.request_group(self.grant.request_id), services.user_group(self.user.pk)]

    def start(self) -> None:
        """Run the session in the background; it ends by itself or through ``end``."""
        self._loop = asyncio.get_running_loop()
        self._run_task = asyncio.create_task(self._run(), name=f"terminal-{self.grant_id}")
        self._watch_task = asyncio.create_task(self._watch(), name=f"terminal-watch-{self.grant_id}")

    @property
    def closing(self) -> bool:
        return self._closing

    async def end(self, reason: str, *, code: int = frames.CLOSE_ENDED, notify: bool = True) -> None:
        """End everything once: the shell, the data channel, the SSM session, the recording, the socket.

        Safe from any task, more than once: the first call decides the reason, every call
        returns when the ending is done.
        """
        self.end_soon(reason, code=code, notify=notify)
        assert self._teardown_task is not None
        await asyncio.shield(self._teardown_task)

    def end_soon(self, reason: str, *, code: int = frames.CLOSE_ENDED, notify: bool = True) -> None:
        """Begin the ending without waiting for it (from a task the ending itself will cancel)."""
        if self._teardown_task is None:
            self._closing = True
            self._wake_output()
            self._teardown_task = asyncio.create_task(self._teardown(reason, code=code, notify=notify))

    async def _teardown(self, reason: str, *, code: int, notify: bool) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        self._stop_taking()
        if notify:
            with contextlib.suppress(Exception):
                # The reason may quote the far end (a close message, an sshd's disconnect): shown escaped.
                await self.browser.send_text(frames.encode("closed", reason=visible(reason)))
                await self.browser.close(code)
        with contextlib.suppress(Exception):
            await self._live_stop(reason)
        if self.bridge is not None:
            await self.bridge.close()
        self._settled = True
        if self._starting is not None:
            await asyncio.wait({self._starting}, timeout=STARTING_WAIT_SECONDS)
        if self.ssm_session_id and self.grant is not None:
            try:
                await sync_to_async(services.ssh_session_terminate, thread_sensitive=False)(
                    grant=self.grant, ssm_session_id=self.ssm_session_id
                )
            except Exception:
                logger.warning("TerminateSession %s failed", self.ssm_session_id, exc_info=True)
        if self.recording is not None and self.record is not None:
            await self._seal(reason)
        if self._slot_id is not None:
            slot_id, self._slot_id = self._slot_id, None
            try:
                await in_db_thread(slots.session_slot_release)(slot_id=slot_id)
            except Exception:
                logger.warning("terminal on grant %s: slot %s not released", self.grant_id, slot_id, exc_info=True)
        if self._run_task is not None:
            await cancel_and_wait(self._run_task)

    # --- the session ----------------------------------------------------------------------
    async def _status(self, message: str) -> None:
        await self.send_text(frames.encode("status", message=message))

    # --- towards the browser, counted (terminal.flow) -----------------------------------------
    async def send_text(self, text: str) -> None:
        """An envelope: sent at once (they are few and small), and counted."""
        await self.browser.send_text(text)
        await self._counted(len(text))

    async def _counted(self, size: int) -> None:
        mark = self._window.count(size)
        if mark is not None:
            await self.browser.send_text(frames.encode("mark", id=mark))

    async def _send_output(self, data: bytes) -> bool:
        """Wait until the browser has acknowledged enough, then record and send ``data``; False if
        the terminal closed meanwhile (nothing sent; ``data``, read from the shell already, is still
        recorded if the recording is not yet being sealed)."""
        while not self._window.fits(len(data)):
            if self.behind_since is None:
                self.behind_since = time.monotonic()
            self._acked = asyncio.get_running_loop().create_future()
            await self._acked
            if self._closing:
                self._record_unsent_output(data)
                return False
        self.behind_since = None
        # Recorded at the moment it is handed to the browser: the recording holds what was sent.
        self._record_output(data)
        await self.browser.send_bytes(data)
        await self._counted(len(data))
        return True

    def _wake_output(self) -> None:
        if self._acked is not None and not self._acked.done():
            self._acked.set_result(None)

    async def _run(self) -> None:
        try:
            await self._open()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("terminal on grant %s failed", self.grant_id)
            await self.end(await self._or_request_end(f"The connection to the instance failed: {exc}"))

    async def _or_request_end(self, reason: str) -> str:
        """The request's own reason when it has ended, else ``reason``. Its removal ends the Session
        Manager session, which may reach this terminal (a lost connection, the shell ended) before the
        channel layer's ``terminal.close`` does: the person should still hear why."""
        if self.grant is None:
            return reason
        try:
            ended = await in_db_thread(services.request_ended_message)(request_id=self.grant.request_id)
        except Exception:
            logger.warning("terminal on grant %s: the request's state not read", self.grant_id, exc_info=True)
            return reason
        return ended or reason

    async def _open(self) -> None:
        if self.grant is None and not await self.load():
            await self.end("This terminal is not available.")
            return
        grant = self.grant
        assert grant is not None
        reason = await in_db_thread(services.terminal_unavailable_reason)(grant=grant, user=self.user)
        if reason:
            await self.end(reason)
            return
        # Before anything is started on the instance: one person's open sessions are capped.
        try:
            self._slot_id = await in_db_thread(slots.session_slot_claim)(
                user=self.user, grant=grant, client=Client.BROWSER
            )
        except slots.SessionLimitReached as refused:
            await self.end(refused.reason, code=frames.CLOSE_TOO_MANY_SESSIONS)
            return
        if not await self._storage_ready(grant):
            return
        keys = self.login_keys = grant_login_keys(grant=grant, user=self.user)
        try:
            await keys.prepare()
        except (NotAllowed, RequestRuleError) as exc:
            await self.end(f"The certificate was refused: {exc}")
            return
        await self._status("Starting a Session Manager session…")
        started: dict[str, str] = {}

        async def start_session() -> None:
            started.update(
                await in_db_thread(grant_start_session)(
                    grant=grant, user=self.user, document=SSH_DOCUMENT, port=22, via="terminal"
                )
            )
            self.ssm_session_id = started["SessionId"]

        try:
            if not await self._unabandoned(start_session):
                return
        except RequestRuleError as exc:
            await self.end(f"The session could not start: {exc}")
            return
        await self._log_in(grant, keys, stream_url=started["StreamUrl"], token=started["TokenValue"])

    async def _unabandoned(self, step: Callable[[], Awaitable[None]]) -> bool:
        """Run a step of the start that makes something outside this process (the Session Manager
        session, the terminal's row) to its end, even when the terminal closes meanwhile: the ending
        waits for it and ends what it made at once, with its own reason (the browser's close), not
        the orphan sweep later, as if this web process had died. False: closing, the start stops."""
        if self._settled:
            return False
        self._starting = asyncio.ensure_future(step())
        await asyncio.shield(self._starting)
        return not self._closing

    async def _log_in(self, grant: Grant, keys: LoginKeys, *, stream_url: str, token: str) -> None:
        bridge = SshBridge(stream_url=stream_url, token=token, username=grant.username, keys=keys)
        self.bridge = bridge
        await self._status(f"Logging in as {grant.username}…")
        await bridge.open(cols=self.cols, rows=self.rows)

        async def record() -> None:
            # Logged in on the instance, even if the browser went meanwhile: on record, then ended.
            self.record = await in_db_thread(services.terminal_session_start)(
                user=self.user,
                grant=grant,
                ssm_session_id=self.ssm_session_id,
                recording_path=self._prefix,
                unrecorded=self._unrecorded,
                slot_id=self._slot_id,
            )
            self._slot_id = None  # the row took its place
            # Chunks and the heartbeat are timed by _watch, which this terminal runs anyway.
            self._start_recording(grant, env={"TERM": TERM_TYPE}, timer=False)
            self._next_chunk = time.monotonic() + settings.PASSPORT_RECORDING_CHUNK_SECONDS

        try:
            if not await self._unabandoned(record):
                await bridge.close()  # it may have opened after the ending closed it
                return
        except slots.SessionLimitReached as refused:  # its slot expired while it opened, and others took it
            await self.end(refused.reason, code=frames.CLOSE_TOO_MANY_SESSIONS)
            return
        # An ending committed while the session was being recorded must not be missed.
        if not await in_db_thread(services.terminal_still_allowed)(grant=grant):
            await self.end("The access request has ended; this terminal is closed.")
            return
        moderated = await in_db_thread(live_services.session_moderated)(grant=grant)
        feed = await self._live_start(
            moderated=moderated, on_observers=self._observers_changed, on_moderation=self._moderation_changed
        )
        await self.send_text(frames.encode("ready"))
        if not feed.running:
            await self._moderation_changed(feed.state)
        # The end time at once (the watcher may be asleep until its next sign-in check), then by _watch.
        self._next_expiry = time.monotonic() + await self._check_expiry()
        self._shell_running = True
        try:
            await bridge.pump_output(self._deliver)
        finally:
            self._shell_running = False
        await self.end(await self._or_request_end("The shell ended."))

    async def _deliver(self, data: bytes) -> None:
        if self.live is not None and not self.live.running:
            # A moderated session with no approver watching: the shell is not read meanwhile.
            await self.live.wait_running()
        # Storage far behind on the recording: the shell is not read until it catches up.
        await self._recording_caught_up()
        if self._closing:
            # Read from the shell already (before or while the ending began, or held for an approver
            # until it did): never sent, but the shell's output all the same, so recorded.
            self._record_unsent_output(data)
            return
        await self._send_output(data)

    # --- browser -> server ----------------------------------------------------------------
    async def receive_text(self, text: str) -> None:
        await self._receive(frames.decode_text, text)

    async def receive_bytes(self, data: bytes) -> None:
        await self._receive(frames.decode_binary, data)

    async def _receive(self, decode: Callable[[Any], frames.Frame], raw: Any) -> None:
        if self._closing:
            return
        try:
            frame = decode(raw)
        except frames.FrameRefused as refused:
            logger.warning("terminal on grant %s refused a frame: %s", self.grant_id, refused.reason)
            self.end_soon(refused.reason, code=refused.code)
            return
        # One handler per frame type (terminal.frames decides which types exist); a match, not a
        # table of bound methods, which every open terminal would keep (about 1.8 KiB each).
        match frame:
            case frames.Input():
                await self._on_input(frame)
            case frames.Resize():
                await self._on_resize(frame)
            case frames.Ping():
                await self._on_ping(frame)
            case frames.Ack():
                if self._window.acknowledge(frame.id):  # a mark it never sent counts for nothing
                    self.behind_since = None  # catching up: the stall's clock starts again
                    self._wake_output()

    async def _on_resize(self, frame: frames.Resize) -> None:
        self.cols, self.rows = frame.cols, frame.rows
        if self.bridge is not None and self.recording is not None:
            self._record_resize(frame.cols, frame.rows)
            self.bridge.resize(frame.cols, frame.rows)

    async def _on_ping(self, frame: frames.Ping) -> None:
        if self._window.fits(0):  # a page that reads nothing needs no answer (nor the memory it would take)
            await self.send_text(frames.encode("pong"))
