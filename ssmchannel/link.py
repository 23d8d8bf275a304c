"""Sequencing, acknowledgement and retransmission over a Transport: what both ends of the data
channel do, whichever end they are.

The client (``ssmchannel.channel``) and the agent stand-in (``devcloud.streams``) differ only
in which message type they send (input_stream_data / output_stream_data) and in what they do
with a message once it is in order; that part is a ``LinkHandler`` (``ssmchannel.link_terms``).

Receiving, per sequenced message:

- the next expected one: acknowledged, then handed to the handler, then any held
  successors are handed over too;
- a later one: acknowledged and held (up to a capacity in messages and in bytes; past it it
  is dropped unacked so the sender resends it);
- an earlier one (a duplicate): acknowledged again, because the sender only resends when
  our first ack was lost, and dropped (at most once per timeout each: ``RepeatLimiter``).

A handler may refuse an in-order message (``accepts`` returns False: its buffer is full, or
the session is not ready). The message is then neither acknowledged nor processed, and the
sender's retransmission delivers it later: the protocol's only form of flow control.

Sending: every message gets the next sequence number and stays in the outgoing window until
acknowledged; a background pass resends, oldest first, the oldest message once it has waited
the smoothed retransmission timeout, and any message that a later one's ack shows lost.
Senders wait while the window is full, so a peer that stops acknowledging slows the writer
instead of growing memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ssmchannel.errors import ChannelClosedError, TransportClosed
from ssmchannel.link_terms import LinkConfig, LinkHandler
from ssmchannel.messages import (
    CONTROL_FLAGS,
    FLAG_SYN,
    PAYLOAD_OFFSET,
    ClientMessage,
    MessageType,
    encode_frame,
)
from ssmchannel.messages.fast import encode_stream_frames
from ssmchannel.receiving import LinkReceiver
from ssmchannel.reliability import (
    OutgoingWindow,
    ReorderBuffer,
    RepeatLimiter,
    RttEstimator,
)
from ssmchannel.transport import FLUSH_BYTES, Transport
from ssmchannel.waiting import Changes, Event, cancel_and_wait, raise_failure

logger = logging.getLogger(__name__)


class ReliableLink(LinkReceiver):
    """One end's sequencing state over a transport; ``run()`` receives and resends until closed.

    Sending is here; receiving (the receive loop, acks, ordering) is ``LinkReceiver``'s.
    """

    def __init__(
        self,
        transport: Transport,
        handler: LinkHandler,
        *,
        outgoing_type: MessageType,
        incoming_type: MessageType,
        config: LinkConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        mark_first_syn: bool = False,
    ) -> None:
        self.transport = transport
        self.handler = handler
        self.outgoing_type = outgoing_type
        self.incoming_type = incoming_type
        self.config = config or LinkConfig()
        self.clock = clock
        # The agent flags its first stream message SYN; the plugin sends 0 everywhere.
        self._mark_first_syn = mark_first_syn
        self.rtt = RttEstimator(
            initial_rtt=self.config.initial_rtt,
            initial_rto=self.config.initial_rto,
            max_rto=self.config.max_rto,
            granularity=self.config.clock_granularity,
        )
        self.window = OutgoingWindow()
        self.incoming: ReorderBuffer[ClientMessage] = ReorderBuffer(
            self.config.incoming_capacity, max_bytes=self.config.incoming_capacity_bytes
        )
        self._repeats = RepeatLimiter()  # which copies of messages already acknowledged to answer
        self.next_sequence_number = 0
        self.paused = False
        # While paused: since when, and since when messages wait in the window (the later of the
        # pause and the moment the window stopped being empty; see resend_due).
        self._paused_at = 0.0
        self._held_since = 0.0
        self._give_up_when_held = True  # False while held by hold_until_resumed: no time limit
        self.closed_reason: str | None = None
        self._changed = Changes()  # window shrank, pause lifted, or link closed
        self._closed = Event()
        self._receiver: asyncio.Task[None] | None = None
        self._pending = Event()  # set while the window may hold something
        self._waiting = 0  # tasks waiting on _changed: acks notify only when there are some
        # A transport that can queue frames without awaiting (WebSocketTransport) writes the
        # frames of one loop turn together; others are awaited frame by frame.
        self._send_nowait: Callable[[bytes], None] | None = getattr(transport, "send_nowait", None)
        self._drain: Callable[[], Awaitable[None]] | None = getattr(transport, "drain", None)
        self._send_batch_nowait: Callable[[list[bytes]], None] | None = getattr(transport, "send_batch_nowait", None)
        # True while frames wait in our own write buffer: the peer is not reading, so nothing
        # sent can be lost yet, and resending would only queue more (WebSocketTransport).
        self._backed_up: Callable[[int], bool] | None = getattr(transport, "backed_up", None)

    # --- state -----------------------------------------------------------------------

    async def wait_closed(self) -> str:
        await self._closed.wait()
        assert self.closed_reason is not None
        return self.closed_reason

    async def close(self, reason: str) -> None:
        """Stop the link (first reason wins); the transport is left to the owner."""
        if self._closed.is_set():
            return
        self.closed_reason = reason
        self._closed.set()
        # Stop a receiver blocked in recv(); from inside it, its loop simply ends.
        if self._receiver is not None and self._receiver is not asyncio.current_task():
            self._receiver.cancel()
        self._changed.notify_all()

    async def pause(self) -> None:
        """pause_publication: the service cannot forward now; keep messages until resumed.

        Messages held by pauses for ``ack_timeout`` in all end the link (see ``resend_due``).
        """
        self._hold(give_up=True)

    def hold_until_resumed(self) -> None:
        """Like ``pause``, with no time limit: the far end is gone and may come back.

        devcloud's agent, while its client is Disconnected: as AWS's agent, it keeps the session's
        unacknowledged output, for a client that resumes the session, until whoever owns the link
        ends it (TerminateSession, the idle timeout). A plain call, for a transport's callback.
        """
        self._hold(give_up=False)

    def _hold(self, *, give_up: bool) -> None:
        if not self.paused:
            self.paused = True
            self._paused_at = self._held_since = self.clock()
            self._give_up_when_held = give_up
        elif not give_up:
            self._give_up_when_held = False  # a pause never shortens a hold without a time limit

    async def resume(self) -> None:
        """start_publication (or the far end back): send what was kept, in order."""
        if not self.paused:
            return
        self.paused = False
        # Only the pause is left out: a far end pausing for a moment now and then neither
        # restarts the ack timeout nor the count of time held (see resend_due).
        self.window.leave_out_pause(self.clock() - self._paused_at, held=self._give_up_when_held)
        self._give_up_when_held = True
        self._changed.notify_all()
        await self.resend_due()

    # --- sending ---------------------------------------------------------------------

    async def send_data(self, payload_type: int, payload: bytes, *, wait_for_window: bool = True) -> int:
        """Send one sequenced message and return its sequence number.

        Waits while the window is full, unless ``wait_for_window`` is False (for replies sent
        from inside ``deliver``, where waiting could deadlock the receiver).
        """
        if wait_for_window and self._window_full():
            await self._wait_for(lambda: self.closed or not self._window_full())
        if self.closed:
            raise ChannelClosedError(self.closed_reason or "closed")
        sequence_number = self.next_sequence_number
        self.next_sequence_number += 1
        flags = FLAG_SYN if self._mark_first_syn and sequence_number == 0 else 0
        frame = encode_frame(self.outgoing_type, sequence_number, flags, payload_type, payload)
        # Into the window before the send: the ack can arrive before send() returns.
        if self.paused and not self.window:
            self._held_since = self.clock()
        pending = self.window.add(sequence_number, frame)
        self._pending.set()
        if not self.paused:
            self.window.mark_sent(pending, self.clock())
            await self._send_frame(frame)
        return sequence_number

    async def send_stream(self, payload_type: int, data: bytes, chunk_size: int) -> None:
        """Send ``data`` as messages of at most ``chunk_size`` bytes: ``send_data`` for bulk output.

        Each message is numbered, kept and sent as ``send_data`` would; the clock is read, the
        window checked for waiting and the frames written once per batch (up to the window's room).
        """
        start, end = 0, len(data)
        while start < end:
            if self._window_full():
                await self._wait_for(lambda: self.closed or not self._window_full())
            if self.closed:
                raise ChannelClosedError(self.closed_reason or "closed")
            now = self.clock()
            window = self.window
            # As many messages as the window has room for, in messages and in bytes (as
            # _window_full counts them: one more while any byte of room is left).
            room = self.config.max_unacked - len(window)
            room_bytes = self.config.max_unacked_bytes - window.bytes
            count = min(room, -(-(end - start) // chunk_size), -(-room_bytes // (chunk_size + PAYLOAD_OFFSET)))
            if self.paused and not window:
                self._held_since = now
            stop = min(end, start + count * chunk_size)
            first = self.next_sequence_number
            frames = encode_stream_frames(
                self.outgoing_type,
                first,
                payload_type,
                data,
                start,
                stop,
                chunk_size,
                time.time_ns() // 1_000_000,
                syn_sequence_number=0 if self._mark_first_syn else -1,
            )
            self.next_sequence_number = first + len(frames)
            start = stop
            if self.paused:
                for sequence_number, frame in enumerate(frames, first):
                    window.add(sequence_number, frame)
                frames = []
            else:
                window.add_sent(first, frames, now)
            self._pending.set()
            if frames:
                await self._send_frames(frames)

    async def send_control(self, message_type: MessageType | str, payload: bytes = b"") -> None:
        """An unsequenced message (channel_closed, publication notices)."""
        message = ClientMessage(message_type=message_type, flags=CONTROL_FLAGS, payload=payload)
        await self._send_frame(message.encode())

    async def wait_all_acked(self, timeout: float | None = None) -> bool:
        """Wait until every sent message is acknowledged; False on timeout or close."""

        try:
            await asyncio.wait_for(self._wait_for(lambda: self.closed or len(self.window) == 0), timeout)
        except TimeoutError:
            return False
        return len(self.window) == 0

    async def resend_due(self) -> int:
        """One resend pass (see OutgoingWindow.due); gives up after ``ack_timeout``. Returns how many were sent.

        While publication is paused nothing is sent, and the time paused does not count towards
        the timeout; but pauses that hold the oldest message for ``ack_timeout`` in all end the
        link too, or an agent that never sends start_publication (or sends it for a moment now
        and then) would keep the writers waiting for ever (not a hold by ``hold_until_resumed``,
        which its owner ends). A message so waits at most ``ack_timeout`` unpaused and as long
        paused, and the part of the pause it was queued in, if it was.
        """
        if self.closed:
            return 0
        if self.paused:
            waiting = len(self.window)
            oldest = self.window.oldest()
            held = self.clock() - self._held_since + (oldest.held if oldest is not None else 0.0)
            if waiting and self._give_up_when_held and held >= self.config.ack_timeout:
                await self.close(
                    f"publication was paused for {self.config.ack_timeout:g} s"
                    f" with {waiting} message{'' if waiting == 1 else 's'} waiting"
                )
            return 0
        if self._backed_up is not None and self._backed_up(FLUSH_BYTES):
            return 0
        now = self.clock()
        oldest = self.window.oldest()
        if oldest is not None and oldest.first_sent is not None and now - oldest.first_sent >= self.config.ack_timeout:
            await self.close(
                f"message {oldest.sequence_number} was not acknowledged in {self.config.ack_timeout:g} s"
                f" ({oldest.transmissions} sends)"
            )
            return 0
        due = self.window.due(now, rto=self.rtt.rto, loss_delay=self.rtt.loss_delay, limit=self.config.resend_batch)
        for pending in due:
            if pending.transmissions:
                logger.debug("resending %s #%d", self.outgoing_type, pending.sequence_number)
            self.window.mark_sent(pending, now)
            await self._send_frame(pending.frame)
        return len(due)

    def _window_full(self) -> bool:
        return len(self.window) >= self.config.max_unacked or self.window.bytes >= self.config.max_unacked_bytes

    async def _wait_for(self, predicate: Callable[[], bool]) -> None:
        self._waiting += 1
        try:
            await self._changed.wait_for(predicate)
        finally:
            self._waiting -= 1

    async def _notify(self) -> None:
        if self._waiting:
            self._changed.notify_all()

    async def _send_frame(self, frame: bytes) -> None:
        try:
            if self._send_nowait is None:
                await self.transport.send(frame)
                return
            self._send_nowait(frame)
            if self._drain is not None:
                await self._drain()
        except TransportClosed as exc:
            await self.close(exc.reason)
            raise ChannelClosedError(exc.reason) from exc

    async def _send_frames(self, frames: list[bytes]) -> None:
        """``_send_frame`` for several frames, in order, with one write where the transport allows."""
        if self._send_batch_nowait is None:
            for frame in frames:
                await self._send_frame(frame)
            return
        try:
            self._send_batch_nowait(frames)
            if self._drain is not None:
                await self._drain()
        except TransportClosed as exc:
            await self.close(exc.reason)
            raise ChannelClosedError(exc.reason) from exc

    # --- the loops -------------------------------------------------------------------

    async def run(self) -> str:
        """Receive and resend until the link closes; returns the reason.

        An error neither loop expected (a bug, or a far end's input no check foresaw) closes the
        link with a reason rather than leaving it open with nothing reading it: whoever waits on
        the link (a reader, a writer waiting for window space) is woken, and the error is logged.
        """
        self._receiver = asyncio.create_task(self._receive_loop(), name="ssmchannel-receive")
        resender = asyncio.create_task(self._resend_loop(), name="ssmchannel-resend")
        try:
            # asyncio.wait, not await: close() cancels the receiver, which is no error here.
            await asyncio.wait({self._receiver, resender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(self._receiver, resender)
        try:
            raise_failure(self._receiver, resender)
        except Exception as exc:
            logger.error("the %s link failed", self.outgoing_type, exc_info=exc)
            # The type only: the error's text may carry the far end's bytes.
            await self.close(f"internal error in the data channel ({type(exc).__name__})")
        return self.closed_reason or "closed"

    async def _resend_loop(self) -> None:
        while not self.closed:
            if not self.window:
                # Idle (an SSH session waiting for a keystroke): sleep until something is sent.
                self._pending.clear()
                await self._pending.wait()
            await asyncio.sleep(self.config.resend_interval)
            try:
                await self.resend_due()
            except ChannelClosedError:
                return
