"""The bookkeeping behind reliable delivery, free of I/O and clocks so it can be tested exactly.

The data channel is a WebSocket, yet both ends still number, acknowledge and resend their
stream messages: the service in the middle may drop or replay messages across reconnects
and publication pauses. These three pieces are what each end keeps:

- ``RttEstimator``: TCP's smoothed round-trip time (RFC 6298 constants, as the plugin uses):
  the retransmission timeout starts at 200 ms and never exceeds 1 s.
- ``OutgoingWindow``: sent but unacknowledged messages, oldest first, with their send times,
  and which of them to send again (see ``OutgoingWindow.due``).
- ``ReorderBuffer``: received messages that arrived ahead of the one expected next (bounded in
  count and in bytes).
- ``RepeatLimiter``: which copies of an already acknowledged message to acknowledge again (each
  sequence number at most once per interval).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

DEFAULT_ROUND_TRIP_TIME = 0.1
DEFAULT_RETRANSMISSION_TIMEOUT = 0.2
MAX_RETRANSMISSION_TIMEOUT = 1.0
CLOCK_GRANULARITY = 0.01
RTT_GAIN = 1 / 8
RTT_VARIATION_GAIN = 1 / 4


class RttEstimator:
    """Smoothed RTT and its variation; ``rto`` is how long to wait for an ack before resending."""

    def __init__(
        self,
        *,
        initial_rtt: float = DEFAULT_ROUND_TRIP_TIME,
        initial_rto: float = DEFAULT_RETRANSMISSION_TIMEOUT,
        max_rto: float = MAX_RETRANSMISSION_TIMEOUT,
        granularity: float = CLOCK_GRANULARITY,
    ) -> None:
        self.srtt = initial_rtt
        self.rttvar = 0.0
        self.rto = min(initial_rto, max_rto)
        self.max_rto = max_rto
        self.granularity = granularity

    def observe(self, sample: float) -> float:
        """Fold one measured round trip (seconds) in and return the new timeout."""
        sample = max(sample, 0.0)
        # The variation is measured against the estimate before this sample, as in RFC 6298.
        self.rttvar = (1 - RTT_VARIATION_GAIN) * self.rttvar + RTT_VARIATION_GAIN * abs(self.srtt - sample)
        self.srtt = (1 - RTT_GAIN) * self.srtt + RTT_GAIN * sample
        self.rto = min(self.srtt + max(self.granularity, 4 * self.rttvar), self.max_rto)
        return self.rto

    @property
    def loss_delay(self) -> float:
        """How long after a later message got through an unacknowledged one counts as lost.

        A round trip plus a quarter of one for reordering (RACK, RFC 8985), never above the
        retransmission timeout.
        """
        return min(self.srtt + max(self.granularity, self.srtt / 4), self.rto)


@dataclass(slots=True)
class Pending:
    """One sequenced message waiting for its ack."""

    sequence_number: int
    frame: bytes
    transmissions: int = 0
    last_sent: float | None = None  # None: never sent (queued while publication was paused)
    send_order: int = -1  # position of the latest transmission among all transmissions
    # When it was first sent, moved on by every publication pause since: unpaused time waited.
    first_sent: float | None = None
    first_order: int = -1  # position of its first transmission among all transmissions
    held: float = 0.0  # time held by earlier publication pauses (those with a time limit)


class OutgoingWindow:
    """Unacknowledged outgoing messages in sequence order."""

    def __init__(self) -> None:
        self._pending: OrderedDict[int, Pending] = OrderedDict()
        self.bytes = 0  # the frames' total size
        self._transmissions = 0
        # While every message was first sent in sequence order and none waits unsent, first
        # transmissions rise along the window, which lets ``due`` stop early (see there).
        self._unsent = 0
        self._first_sends_in_order = True
        self._last_first_sent = -1
        # The send_order of the most recently sent of the acknowledged messages. An order,
        # not a time, so that two sends within one clock tick are still told apart.
        self._newest_delivered = -1
        # (send_order of a resend whose ack may answer it, when that ack came): see acknowledge.
        self._ambiguous: tuple[int, float] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, sequence_number: object) -> bool:
        return sequence_number in self._pending

    def add(self, sequence_number: int, frame: bytes) -> Pending:
        if sequence_number in self._pending:
            raise ValueError(f"message {sequence_number} is already waiting for its ack")
        pending = Pending(sequence_number, frame)
        self._pending[sequence_number] = pending
        self.bytes += len(frame)
        self._unsent += 1
        return pending

    def add_sent(self, first_sequence_number: int, frames: list[bytes], now: float) -> None:
        """``add`` then ``mark_sent`` for each of ``frames``, numbered from ``first_sequence_number``."""
        pending_by_number = self._pending
        order = self._transmissions
        total = 0
        sequence_number = first_sequence_number
        try:
            for frame in frames:
                if sequence_number in pending_by_number:
                    raise ValueError(f"message {sequence_number} is already waiting for its ack")
                pending_by_number[sequence_number] = Pending(sequence_number, frame, 1, now, order, now, order)
                total += len(frame)
                order += 1
                sequence_number += 1
        finally:
            if sequence_number > first_sequence_number:
                if first_sequence_number < self._last_first_sent:
                    self._first_sends_in_order = False
                self._last_first_sent = sequence_number - 1
            self.bytes += total
            self._transmissions = order

    def mark_sent(self, pending: Pending, now: float) -> None:
        if pending.transmissions == 0:
            self._unsent -= 1
            pending.first_order = self._transmissions
            if pending.sequence_number < self._last_first_sent:
                self._first_sends_in_order = False
            self._last_first_sent = pending.sequence_number
        pending.transmissions += 1
        pending.last_sent = now
        if pending.first_sent is None:
            pending.first_sent = now
        pending.send_order = self._transmissions
        self._transmissions += 1

    def acknowledge(self, sequence_number: int, now: float) -> float | None:
        """Forget an acknowledged message; return its round trip if it is a clean sample.

        Karn's rule: a message sent more than once gives no sample, because the ack may
        answer any of its copies. Unknown and repeated acks return None.
        """
        pending = self._pending.pop(sequence_number, None)
        if pending is None:
            return None
        self.bytes -= len(pending.frame)
        if pending.last_sent is None:
            self._unsent -= 1
            return None
        if pending.transmissions == 1:
            self._newest_delivered = max(self._newest_delivered, pending.send_order)
            self._ambiguous = None  # first copies are getting through
        else:
            # The ack of a resent message may answer either copy. If it answers the first (a
            # spurious timeout: the first copy was only slow), every message sent between the
            # two copies is on its way too, and counting them overtaken would resend the whole
            # window. If it answers the resend (the first copies were dropped, e.g. by a reader
            # whose buffer was full), they are lost. Only the first copy is known older than
            # the ack; the resend counts once ``loss_delay`` passes without a clean ack (see due).
            self._newest_delivered = max(self._newest_delivered, pending.first_order)
            if self._ambiguous is None or pending.send_order > self._ambiguous[0]:
                self._ambiguous = (pending.send_order, now)
        if pending.transmissions != 1:
            return None
        return now - pending.last_sent

    def due(self, now: float, *, rto: float, loss_delay: float, limit: int | None = None) -> list[Pending]:
        """Messages to (re)send now, oldest first.

        - never sent (kept while publication was paused): all of them;
        - the oldest unacknowledged message, once it has waited ``rto``: the timeout;
        - any other, once a message sent after it was acknowledged and it has waited
          ``loss_delay``: the ack for the later one says this one was lost (RACK).

        Resending every message older than the timeout instead would resend the whole
        window whenever the peer merely queues (a burst, a slow target), and those resends
        queue too: the retransmission collapse TCP learned to avoid.
        """
        if self._ambiguous is not None and now - self._ambiguous[1] >= loss_delay:
            # No clean ack since a resent message's ack: it answered the resend.
            self._newest_delivered = max(self._newest_delivered, self._ambiguous[0])
            self._ambiguous = None
        found: list[Pending] = []
        # Every later message was first sent after this one, and resent only later still: once
        # a first transmission is not older than the newest delivered one, nothing after it
        # is overtaken (this keeps the pass short while a full window waits for its acks).
        can_stop = self._first_sends_in_order and not self._unsent
        for index, pending in enumerate(self._pending.values()):
            if limit is not None and len(found) >= limit:
                break
            if pending.last_sent is None:
                found.append(pending)
                continue
            if can_stop and index > 0 and pending.first_order >= self._newest_delivered:
                break
            waited = now - pending.last_sent
            overtaken = pending.send_order < self._newest_delivered
            if (index == 0 and waited >= rto) or (overtaken and waited >= loss_delay):
                found.append(pending)
        return found

    def oldest(self) -> Pending | None:
        return next(iter(self._pending.values()), None)

    def leave_out_pause(self, length: float, *, held: bool) -> None:
        """After a publication pause of ``length`` seconds: the messages sent before it (all of
        them waited through it) have their delivery clocks moved on by its length, so the time
        paused does not count towards the ack timeout and the time before it still does; when
        ``held`` (a pause with a time limit), the pause adds to their time held.

        Messages queued during the pause are left as they are (never sent, no clock yet): they
        waited for part of it only, and are not counted for that part.
        """
        for pending in self._pending.values():
            if pending.first_sent is not None:
                pending.first_sent += length
                if held:
                    pending.held += length


class RepeatLimiter:
    """Acknowledges a repeated message at most once per ``interval`` for each sequence number.

    A copy of a message already acknowledged means the sender missed the ack, so the copy is
    acknowledged again (the plugin and the agent both do, and a sender left unanswered resends
    until it gives up). A sender that resends on a timeout sends a copy at most once per
    timeout; copies faster than that are a far end flooding us, and answering each would make
    us write as much as it sends. Two generations of the numbers answered, each at most
    ``capacity`` of them, keep it O(1) per copy and its memory bounded: a number answered is
    not answered again for more than one ``interval`` (and at most three); past ``capacity``
    answers in one generation, further copies wait for the next (their senders resend them).
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._current: set[int] = set()
        self._previous: set[int] = set()
        self._since: float | None = None  # when the current generation began

    def answer(self, sequence_number: int, now: float, interval: float) -> bool:
        """Should this copy be acknowledged? (True counts as an answer.)"""
        since = self._since
        if since is None or now - since >= interval:
            elapsed = None if since is None else now - since
            self._previous = self._current if elapsed is not None and elapsed < 2 * interval else set()
            self._current = set()
            self._since = now
        if sequence_number in self._current or sequence_number in self._previous:
            return False
        if len(self._current) >= self.capacity:
            return False
        self._current.add(sequence_number)
        return True


Position = Literal["past", "next", "future"]


class ReorderBuffer(Generic[T]):
    """Hands out received items strictly in sequence order.

    ``expected`` is the next sequence number to process. Items ahead of it are held (up to
    ``capacity`` of them and ``max_bytes`` of their sizes, as ``hold`` is told them) until the
    gap is filled; items behind it were already processed.
    """

    def __init__(self, capacity: int, expected: int = 0, *, max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.expected = expected
        self.bytes = 0  # the held items' sizes
        self._held: dict[int, tuple[T, int]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def position(self, sequence_number: int) -> Position:
        if sequence_number < self.expected:
            return "past"
        if sequence_number == self.expected:
            return "next"
        return "future"

    def holds(self, sequence_number: int) -> bool:
        """Is this early item held already (so a copy of it is a repeat)?"""
        return sequence_number in self._held

    def hold(self, sequence_number: int, item: T, size: int = 0) -> bool:
        """Keep an early item of ``size`` bytes; False when that is more than the buffer may hold
        (by count or bytes): the sender will resend it."""
        if sequence_number in self._held:
            return True
        if len(self._held) >= self.capacity:
            return False
        if self.max_bytes is not None and self.bytes + size > self.max_bytes:
            return False
        self._held[sequence_number] = (item, size)
        self.bytes += size
        return True

    def advance(self) -> None:
        """The expected item was processed."""
        self._take(self.expected)
        self.expected += 1

    def pop_next(self) -> T | None:
        """The held item that is now expected, if any; taking it advances ``expected``."""
        item = self._take(self.expected)
        if item is not None:
            self.expected += 1
        return item

    def _take(self, sequence_number: int) -> T | None:
        held = self._held.pop(sequence_number, None)
        if held is None:
            return None
        self.bytes -= held[1]
        return held[0]
