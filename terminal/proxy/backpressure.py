"""Backpressure across a relay: while one side cannot take more, the other side is not read.

asyncssh calls a session's ``pause_writing`` when its channel's send buffer is full and
``resume_writing`` once it drains; a relay then pauses (and resumes) reading its peer, the channel
on the other side, so neither side buffers without bound and the window fills back to the sender.

asyncssh's ``pause_reading`` and ``resume_reading`` are one flag, and a session relay has more than
one reason to stop reading a channel (the instance's side not open yet, moderation with no approver
watching, the far side full, the recording's storage behind): one reason ending must not resume a
channel another still holds, or the relay takes everything the client sends into memory. A
``ReadGate`` reads its channel only while no reason holds it.
"""

from __future__ import annotations

from typing import Protocol


class PausableReader(Protocol):
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


# Why a ReadGate holds its channel.
OPENING = "opening"  # the instance's side is not open yet
MODERATED = "moderated"  # a moderated session with no approver watching
PEER_FULL = "peer full"  # the other side's send buffer is full (``PausesPeer``)
RECORDING_BEHIND = "recording behind"  # recording storage is far behind (terminal.chunks)


class ReadGate:
    """Reading one channel, held while any reason holds it. As a ``PausableReader`` (what
    ``PausesPeer`` pauses) its pause and resume are the ``PEER_FULL`` reason's."""

    __slots__ = ("_channel", "_reasons")

    def __init__(self, channel: PausableReader) -> None:
        self._channel = channel
        self._reasons: set[str] = set()

    def holds(self, reason: str) -> bool:
        return reason in self._reasons

    def hold(self, reason: str) -> None:
        if not self._reasons:
            self._channel.pause_reading()
        self._reasons.add(reason)

    def reassert(self) -> None:
        """Pause the channel again if a reason holds it: asyncssh resumed it by itself (it does so
        just after a session channel's ``session_started``, whatever that did)."""
        if self._reasons:
            self._channel.pause_reading()

    def release(self, reason: str) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons:
            self._channel.resume_reading()

    def pause_reading(self) -> None:
        self.hold(PEER_FULL)

    def resume_reading(self) -> None:
        self.release(PEER_FULL)


class PausesPeer:
    """A relaying asyncssh session's ``pause_writing``/``resume_writing``: reading ``peer()`` stops and
    starts again with them (nothing while the peer is not open yet). List it before the asyncssh base."""

    def peer(self) -> PausableReader | None:
        raise NotImplementedError

    def pause_writing(self) -> None:
        peer = self.peer()
        if peer is not None:
            peer.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer()
        if peer is not None:
            peer.resume_reading()
