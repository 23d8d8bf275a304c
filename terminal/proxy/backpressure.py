"""Backpressure across a relay: while one side cannot take more, the other side is not read.

asyncssh calls a session's ``pause_writing`` when its channel's send buffer is full and
``resume_writing`` once it drains; a relay then pauses (and resumes) reading its peer, the channel
on the other side, so neither side buffers without bound and the window fills back to the sender.
"""

from __future__ import annotations

from typing import Protocol


class PausableReader(Protocol):
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


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
