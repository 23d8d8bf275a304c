"""sftp requests on a handle the server has not handed out yet, held in order until the OPENs sent
before them are answered (observers.sftp says why a client sends them, and what holding them is for)."""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from terminal.proxy.observers.wire import Fields, ProtocolError

FXP_CLOSE, FXP_READ, FXP_WRITE, FXP_FSETSTAT, FXP_EXTENDED = 4, 5, 6, 10, 200
HANDLE_REQUESTS = frozenset({FXP_CLOSE, FXP_READ, FXP_WRITE, FXP_FSETSTAT})
# Held at most on one channel. A client gets its HANDLE a round trip after its OPEN; one that sends more
# than this meanwhile is no longer followed (its bytes are recorded instead).
MAX_HELD_BYTES = 8 * 2**20
# Answered OPENs that may sit in the heap below an unanswered one (a server answering out of order).
MAX_ANSWERED_KEPT = 4096


def handles_named(kind: int, body: bytes) -> tuple[bytes, ...]:
    """The handles a request acts on in a way the observer reports: the file it reads, writes, closes or
    sets attributes of, both ends of a copy-data. Other requests on handles (fstat, readdir, fsync,
    fstatvfs) change nothing."""
    if kind not in HANDLE_REQUESTS and kind != FXP_EXTENDED:
        return ()
    fields = Fields(body)
    fields.u8()  # kind
    fields.u32()  # request id
    if kind != FXP_EXTENDED:
        return (bytes(fields.string()),)
    if bytes(fields.string()) != b"copy-data":
        return ()
    source = bytes(fields.string())
    fields.u64()  # read offset
    fields.u64()  # length
    return (source, bytes(fields.string()))


@dataclass
class Held:
    body: bytes  # the packet after its length
    end: int  # where it ends in the client's stream
    handles: tuple[bytes, ...]
    opens_before: int  # how many OPEN and OPENDIR the client had sent before it

    @property
    def raw(self) -> bytes:
        """The packet as it crossed the channel."""
        return len(self.body).to_bytes(4, "big") + self.body


class HeldRequests:
    """The requests held, first come first, and which OPEN and OPENDIR (numbered as sent) are unanswered."""

    def __init__(self) -> None:
        self._queue: deque[Held] = deque()
        self.size = 0
        self.opens_sent = 0
        self._unanswered: list[int] = []  # a heap; answered numbers leave it once they reach its top
        self._answered: set[int] = set()

    def __len__(self) -> int:
        return len(self._queue)

    def all(self) -> list[Held]:
        return list(self._queue)

    def first(self) -> Held | None:
        return self._queue[0] if self._queue else None

    def hold(self, held: Held) -> None:
        size = 4 + len(held.body)
        if self.size + size > MAX_HELD_BYTES:
            raise ProtocolError(f"more than {MAX_HELD_BYTES} bytes of requests waiting for a handle")
        self._queue.append(held)
        self.size += size

    def take(self) -> Held:
        held = self._queue.popleft()
        self.size -= 4 + len(held.body)
        return held

    def clear(self) -> None:
        self._queue.clear()
        self.size = 0

    def open_sent(self) -> int:
        """Number the next OPEN or OPENDIR, unanswered until ``open_answered``."""
        number = self.opens_sent
        self.opens_sent += 1
        heapq.heappush(self._unanswered, number)
        return number

    def open_answered(self, number: int) -> None:
        self._answered.add(number)
        if len(self._answered) > MAX_ANSWERED_KEPT:
            self._unanswered = [n for n in self._unanswered if n not in self._answered]
            heapq.heapify(self._unanswered)
            self._answered.clear()

    def may_still_open(self, before: int) -> bool:
        """Whether one of the first ``before`` OPEN and OPENDIR is unanswered: its HANDLE may yet be the
        one a request sent after them names."""
        heap = self._unanswered
        while heap and heap[0] in self._answered:
            self._answered.discard(heapq.heappop(heap))
        return bool(heap) and heap[0] < before
