"""Relaying one SSH session channel between the engineer's ssh and the instance, recorded.

``SessionRelay`` is the asyncssh server session the client's channel talks to; once the portal's
own connection to the instance is up it opens the same kind of channel there (pty-req with the
client's term type if it is a terminfo-like name, size (bounded as the browser terminal's) and
modes; LANG and LC_* with locale values only, terminal.proxy.environment;
shell, exec or the sftp subsystem) and copies, binary-safe, both ways: stdin, stdout and stderr apart,
window-change, signals, break and EOF, then exit-status or exit-signal back to the client.
Flow control follows the slower side: when one side's window fills, the other stops reading; so it
does while the recording's storage is far behind (terminal.chunks ``behind``). Each side is read
through a ``ReadGate`` (terminal.proxy.backpressure), so that no one reason to read again (the
instance's side opening, an approver joining) undoes another's pause: a command that reads no
stdin holds the client's ssh back, as sshd would, and the portal keeps no more than the windows.

Protocol observers (terminal.proxy.observers, scp and sftp) see every byte each way through
``client_data`` / ``server_data`` and report transfers and sftp's file changes, which go to the
Logbook; while one observes, the payload is not recorded. An observer that gives up (its
``failure``) is dropped: from then on the payload is recorded, the recording is sealed partial and
the Logbook says so (``transfer.unobserved``); terminal.proxy.observing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import asyncssh

from core.text import visible
from terminal import live
from terminal.frames import MAX_COLS, MAX_ROWS
from terminal.models import SessionKind
from terminal.proxy import logbook
from terminal.proxy.backpressure import (
    MODERATED,
    OPENING,
    RECORDING_BEHIND,
    PausableReader,
    PausesPeer,
    ReadGate,
)
from terminal.proxy.environment import TERMINAL_TYPE_RULE, locale_environment, terminal_type_refused
from terminal.proxy.observers import observer_for
from terminal.proxy.observing import ObservedChannel, Observer
from terminal.proxy.recording import ChannelRecording

if TYPE_CHECKING:
    from terminal.proxy.server import ProxyConnection

logger = logging.getLogger(__name__)

DEFAULT_COLS, DEFAULT_ROWS = 80, 24
SUBSYSTEMS = ("sftp",)
WAITING_MESSAGE = "This account's sessions are moderated: waiting for an approver to join..."
PAUSED_MESSAGE = "The last approver left: the session is paused until one joins again."


def bounded_terminal(width: int, height: int, pixwidth: int, pixheight: int) -> tuple[int, int, int, int]:
    """A client's terminal size within the browser terminal's bounds (terminal.frames), as the instance's
    pty gets it and the recording keeps it: a larger one makes the recording unplayable. 0 (pty-req: the
    client did not say) stays 0."""
    return min(width, MAX_COLS), min(height, MAX_ROWS), pixwidth, pixheight


class UpstreamSession(PausesPeer, asyncssh.SSHClientSession[bytes]):
    """The instance's side of a relayed session channel."""

    def __init__(self, relay: SessionRelay) -> None:
        self.relay = relay

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.relay.from_instance(data, datatype)

    def eof_received(self) -> bool:
        self.relay.instance_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self.relay.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.relay.exit_signal = (signal, core_dumped, msg, lang)

    def peer(self) -> PausableReader | None:
        return self.relay.client_reads

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.instance_closed()


class SessionRelay(ObservedChannel, PausesPeer, asyncssh.SSHServerSession[bytes]):
    """The client's side: one session channel of the engineer's ssh, scp or sftp."""

    def __init__(self, proxy: ProxyConnection) -> None:
        self.proxy = proxy
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.up: asyncssh.SSHClientChannel[bytes] | None = None
        # Reading each side (``chan``, ``up``), held for as long as any reason holds it.
        self.client_reads: ReadGate | None = None
        self.instance_reads: ReadGate | None = None
        self.term_type: str | None = None
        self.term_size: tuple[int, int, int, int] = (DEFAULT_COLS, DEFAULT_ROWS, 0, 0)
        self.term_modes: dict[int, int] = {}
        self.command: str | None = None
        self.subsystem: str | None = None
        self.recording: ChannelRecording | None = None
        self.observer: Observer | None = None
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool, str, str] | None = None
        self._early: list[bytes] = []
        self._early_eof = False
        self._ended = False
        # asyncssh's is_closing() is already True once EOF was sent: whether the client's channel is gone.
        self._client_gone = False

    @property
    def kind(self) -> str:
        return SessionKind.SHELL if self.command is None and self.subsystem is None else SessionKind.EXEC

    @property
    def command_line(self) -> str:
        if self.subsystem is not None:
            return f"subsystem {self.subsystem}"
        return self.command or ""

    # --- the client's requests ----------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan
        self.client_reads = ReadGate(chan)

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any) -> bool:
        self.term_type, self.term_size, self.term_modes = term_type, bounded_terminal(*term_size), dict(term_modes)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem not in SUBSYSTEMS:
            self.proxy.log(logbook.proxy_refused, what="subsystem", reason="only sftp is relayed", subsystem=subsystem)
            return False
        self.subsystem = subsystem
        return True

    def session_started(self) -> None:
        assert self.client_reads is not None
        self.client_reads.hold(OPENING)
        self.proxy.spawn(self._open())

    async def _open(self) -> None:
        assert self.chan is not None
        refused_term = terminal_type_refused(self.term_type) if self.term_type is not None else None
        if refused_term is not None:
            # TERM reaches the shell as the LC_* variables do, and nothing else records it: only a name.
            self.proxy.log(logbook.proxy_refused, what="terminal type", reason=f"TERM may hold {TERMINAL_TYPE_RULE}",
                           command=self.command_line, term=refused_term)  # fmt: skip
            shown = refused_term if len(refused_term) <= 80 else refused_term[:80] + "..."
            self.stop(f"the terminal type is refused (TERM may hold {TERMINAL_TYPE_RULE}): {shown}")
            return
        # The grant as it is now: a command sent through a connection (a ControlMaster) opened before
        # its request ended must not run after the end, however late the ending's message comes.
        refused = await self.proxy.refusal("session", command=self.command_line)
        if refused is not None:
            self.stop(refused)
            return
        try:
            connection = await self.proxy.upstream_ready()
        except Exception as exc:
            self.stop(f"the instance could not be reached: {exc}")
            return
        cols, rows = self.term_size[0] or DEFAULT_COLS, self.term_size[1] or DEFAULT_ROWS
        environment = locale_environment(self.chan.get_environment())
        if environment.refused:
            self.proxy.log(
                logbook.proxy_refused,
                what="environment",
                reason="only LANG and LC_* with a locale name as value are passed on",
                command=self.command_line,
                variables=environment.refused,
                variables_not_shown=environment.refused_not_shown,
            )
        recording = ChannelRecording(
            user=self.proxy.user,
            grant=self.proxy.grant,
            ssm_session_id=self.proxy.ssm_session_id,
            kind=self.kind,
            command=self.command_line,
            cols=cols,
            rows=rows,
            notify=self._notify,
            stop=self.stop,
            moderation=self._moderation,
            slot_id=self.proxy.slot_id,
            environment=environment.passed,
            term=self.term_type,
        )
        if not await recording.begin():
            return  # refused (recording policy, open-session cap): stop() has closed the channel with the reason
        self.recording = recording
        self.proxy.relays.add(self)  # from here the connection's ending seals it
        if recording.live is not None and not recording.live.running:
            await self._notify(WAITING_MESSAGE)
            await recording.live.wait_running()
        if self._ended:
            return
        self.observer = observer_for(
            command=self.command, subsystem=self.subsystem, on_transfer=self.transferred, on_change=self.changed
        )
        # A file transfer: each file is on record with its digest; the recording keeps no copy of the payload.
        recording.payload_recorded = self.observer is None
        try:
            self.up, _ = await connection.create_session(
                lambda: UpstreamSession(self),
                command=self.command,
                subsystem=self.subsystem,
                env=list(environment.passed.items()),  # a list: an empty tuple means "the default"
                # A pty whenever the client asked for one, even with an empty type (sshd then sets no TERM).
                request_pty="force" if self.term_type is not None else False,
                term_type=self.term_type,
                term_size=self.term_size if self.term_type is not None else None,
                term_modes=self.term_modes or None,
                encoding=None,
            )
        except (asyncssh.Error, OSError) as exc:
            self.stop(f"the instance refused the session: {exc}")
            return
        if self._ended:  # the client left or the connection ended meanwhile
            self.up.close()
            return
        self.instance_reads = ReadGate(self.up)
        assert self.client_reads is not None
        if self.client_reads.holds(MODERATED):  # the last approver left while it opened
            self.instance_reads.hold(MODERATED)
        early, self._early = self._early, []
        for data in early:
            self._relay_input(data)
        if self._early_eof:
            self.up.write_eof()
        self.client_reads.release(OPENING)

    async def _moderation(self, state: str) -> None:
        """A moderated session: nothing flows either way while no approver watches."""
        if state == live.RUNNING:
            for gate in self._gates():
                gate.release(MODERATED)
            if self.up is not None:
                await self._notify("An approver joined: the session runs.")
            return
        for gate in self._gates():
            gate.hold(MODERATED)
        if state == live.PAUSED:
            await self._notify(PAUSED_MESSAGE)

    def _gates(self) -> list[ReadGate]:
        """Reading each side that is open so far, the client's first: taken when called (after any wait)."""
        return [gate for gate in (self.client_reads, self.instance_reads) if gate is not None]

    def _client_open(self) -> bool:
        return self.chan is not None and not self._client_gone

    def _client_writable(self) -> bool:
        """Whether the client's channel still takes data: not after EOF or close, nor once the portal closed
        the SSH connection (asyncssh closes its channels at once, calls ``connection_lost`` a turn later)."""
        return self.chan is not None and not self._client_gone and not self.chan.is_closing()

    async def _notify(self, message: str) -> None:
        """A notice on the client's stderr (a watcher joined or left, output paused): escaped as
        ``stop``'s reason is, since it may name a person, whose name OpenSSH would print raw."""
        if self.chan is not None and self._client_writable():
            self.chan.write_stderr(f"passport: {visible(message)}\r\n".encode())

    def stop(self, reason: str, *, tell: bool = True) -> None:
        """End this channel: refused, the recording policy, or the whole connection ending (``tell``
        False: the CLI prints that reason itself). The reason goes to the client's stderr, escaped
        (``core.text.visible``): it may quote the instance's sshd (a disconnect or channel-open
        failure reason, as asyncssh passes it on), and OpenSSH writes a channel's stderr raw."""
        if self.chan is not None and self._client_open():
            if tell and self._client_writable():
                self.chan.write_stderr(f"passport: {visible(reason)}\r\n".encode())
            self.chan.exit(255)  # nothing once the channel is closing
        if self.up is not None:
            self.up.close()
        self.proxy.spawn(self.finish(reason))

    # --- client -> instance --------------------------------------------------------------------
    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.up is None:
            self._early.append(data)  # before the instance's channel is open: recorded and sent then
            # asyncssh resumed reading the channel just after session_started held it: no more until open.
            if self.client_reads is not None:
                self.client_reads.reassert()
            return
        self._relay_input(data)

    def _relay_input(self, data: bytes) -> None:
        assert self.up is not None
        # Observed first: if the observer gives up on these bytes, they are recorded already.
        if self.observer is not None:
            self._observe(self.observer.client_data, data)
        if self.recording is not None:
            self.recording.input(data)
            self._keep_up_with_recording(self.recording)
        self.up.write(data)

    def eof_received(self) -> bool:
        if self.up is None:
            self._early_eof = True
        else:
            self.up.write_eof()
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self.term_size = bounded_terminal(width, height, pixwidth, pixheight)
        width, height = self.term_size[:2]
        if self.recording is not None:
            self.recording.resize(width, height)
        if self.up is not None:
            self.up.change_terminal_size(width, height, pixwidth, pixheight)

    def signal_received(self, signal: str) -> None:
        if self.up is not None:
            self.up.send_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self.up is None:
            return False
        self.up.send_break(msec)
        return True

    def peer(self) -> PausableReader | None:
        return self.instance_reads

    def _keep_up_with_recording(self, recording: ChannelRecording) -> None:
        """Storage far behind on the recording: neither side is read until it catches up."""
        if recording.behind and self.client_reads is not None and not self.client_reads.holds(RECORDING_BEHIND):
            for gate in self._gates():
                gate.hold(RECORDING_BEHIND)
            self.proxy.spawn(self._read_once_recorded(recording))

    async def _read_once_recorded(self, recording: ChannelRecording) -> None:
        await recording.caught_up()
        for gate in self._gates():
            gate.release(RECORDING_BEHIND)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_gone = True
        if self.up is not None:
            self.up.close()
        self.proxy.spawn(self.finish("The client closed the session."))

    # --- instance -> client --------------------------------------------------------------------
    def from_instance(self, data: bytes, datatype: asyncssh.DataType) -> None:
        stderr = datatype == asyncssh.EXTENDED_DATA_STDERR
        if self.observer is not None and not stderr:
            self._observe(self.observer.server_data, data)
        if self.recording is not None:
            self.recording.output(data, payload=not stderr)
            self._keep_up_with_recording(self.recording)
        if self.chan is None or not self._client_writable():
            return
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.chan.write_stderr(data)
        else:
            self.chan.write(data)

    def instance_eof(self) -> None:
        if self.chan is not None and self._client_open():
            self.chan.write_eof()

    def instance_closed(self) -> None:
        if self.chan is not None and self._client_open():
            if self.exit_signal is not None:
                signal, core_dumped, msg, lang = self.exit_signal
                self.chan.exit_with_signal(signal, core_dumped, msg, lang)
            elif self.exit_status is not None:
                self.chan.exit(self.exit_status)
            else:
                self.chan.close()
        self.proxy.spawn(self.finish("The session ended."))

    # --- ending -------------------------------------------------------------------------------
    async def finish(self, reason: str) -> None:
        """Seal the recording once (the first reason wins), and let the observer report the rest."""
        if self._ended:
            return
        self._ended = True
        self.proxy.relays.discard(self)
        self._observer_ended()
        if self.recording is not None:
            signal = self.exit_signal[0] if self.exit_signal else ""
            await self.recording.finish(reason, exit_status=self.exit_status, exit_signal=signal)
