"""The receiving half of ``ReliableLink`` (``ssmchannel.link``): frames in, acks out, messages in order.

Per received frame of the peer's stream type (see the link's docstring for the rules):

- the next expected one is acknowledged, handed to the handler, then any held successors;
- a later one is acknowledged and held; an earlier one (a duplicate) acknowledged again, at
  most once per retransmission timeout for each sequence number (``RepeatLimiter``).

Acks are queued without waiting for the socket. Before each read the loop checks that our
write buffer holds no more than ``write_backlog_limit``: past it the far end is not reading
what we send, so we stop reading it until the buffer drains (or close after ``drain_timeout``).

The frames of one read come as one batch (``WebSocketTransport.recv_batch``). The common
case of bulk transfer, the next expected output message for a handler that offers
``output_room`` and ``take_outputs``, is checked (header, length, SHA-256 digest), acknowledged
and taken without building a message object or awaiting anything; the batch's payloads go to
the handler in one call and its acks leave in one write (``send_batch_nowait``), and acks
received in the batch give one RTT sample (the newest clean one), as TCP samples once per
round trip. Everything else takes the general path (``ClientMessage.decode``,
``_receive_sequenced``), which applies the same rules message by message.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ssmchannel.errors import ChannelClosedError, MessageError, TransportClosed
from ssmchannel.messages import (
    PAYLOAD_OFFSET,
    AcknowledgeContent,
    ClientMessage,
    MessageType,
    PayloadType,
    acknowledge_frame,
)
from ssmchannel.messages.fast import (
    acknowledge_frames,
    acknowledged_sequence,
    padded_type,
    quoted_type,
    read_stream_message,
    stream_prefix,
)
from ssmchannel.transport import Frame
from ssmchannel.waiting import Event

if TYPE_CHECKING:
    from ssmchannel.link_terms import LinkConfig, LinkHandler
    from ssmchannel.reliability import OutgoingWindow, ReorderBuffer, RepeatLimiter, RttEstimator
    from ssmchannel.transport import Transport

logger = logging.getLogger(__name__)

_OUTPUT = int(PayloadType.OUTPUT)
# What the fast path reads of a header, in one unpack: HeaderLength and MessageType (36 bytes, as
# ``stream_prefix`` gives them), SequenceNumber, MessageId, PayloadDigest, PayloadType, PayloadLength.
_HEADER_FIELDS = struct.Struct(">36s12xq8x16s32sII")
assert _HEADER_FIELDS.size == PAYLOAD_OFFSET


class LinkReceiver:
    """Mixed into ReliableLink, which sets these attributes and the methods named below."""

    transport: Transport
    handler: LinkHandler
    incoming_type: MessageType
    config: LinkConfig
    clock: Callable[[], float]
    rtt: RttEstimator
    window: OutgoingWindow
    incoming: ReorderBuffer[ClientMessage]
    closed_reason: str | None
    _send_nowait: Callable[[bytes], None] | None
    _backed_up: Callable[[int], bool] | None
    _drain: Callable[[], Awaitable[None]] | None
    _repeats: RepeatLimiter
    _waiting: int

    _closed: Event

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # ReliableLink's own (``ssmchannel.link``).
    async def close(self, reason: str) -> None:
        raise NotImplementedError

    async def _notify(self) -> None:
        raise NotImplementedError

    async def _send_frame(self, frame: bytes) -> None:
        raise NotImplementedError

    async def _receive_loop(self) -> None:
        incoming = padded_type(self.incoming_type)
        # A handler may offer ``room``, an asyncio.Event set while it can take more: while it is
        # clear the link stops reading, so the peer is held back by TCP (as the plugin's blocking
        # write to its output holds it) rather than by messages refused and resent. Only while
        # our own messages wait for acks does it read on every ``room_wait`` seconds (what the
        # handler cannot keep is then refused by ``accepts``, and resent by the peer).
        room: Event | asyncio.Event | None = getattr(self.handler, "room", None)
        recv_batch: Callable[[], Awaitable[list[Frame]]] | None = getattr(self.transport, "recv_batch", None)
        backed_up = self._backed_up
        backlog_limit = self.config.write_backlog_limit
        while not self.closed:
            while room is not None and not room.is_set() and not self.closed:
                try:
                    await asyncio.wait_for(room.wait(), self.config.room_wait)
                except TimeoutError:
                    if self.window:
                        break
            if self.closed:
                # Closed while waiting for room: the close's cancel may have been lost (3.11's
                # wait_for drops it when room comes free in the same turn), so do not read on.
                return
            if backed_up is not None and backed_up(backlog_limit) and not await self._wait_until_drained():
                return
            try:
                frames = await recv_batch() if recv_batch is not None else [await self.transport.recv()]
            except TransportClosed as exc:
                await self.close(exc.reason)
                return
            try:
                await self._receive_frames(frames, incoming)
            except ChannelClosedError:
                return

    async def _wait_until_drained(self) -> bool:
        """Our write buffer is over ``write_backlog_limit``: wait, not reading, until it drains.

        The far end is not reading what we send (our acks among it). Reading on would queue an
        ack for each of its messages, without bound; not reading holds it back through TCP.
        False once the link is closed: it did not drain within ``drain_timeout``, or the
        transport closed.
        """
        backed_up, drain = self._backed_up, self._drain
        assert backed_up is not None
        limit, timeout = self.config.write_backlog_limit, self.config.drain_timeout
        try:
            async with asyncio.timeout(timeout):
                while backed_up(limit) and not self.closed:
                    if drain is not None:
                        await drain()
                    if backed_up(limit):
                        # drain() returned above our limit (its own mark is higher): look again later.
                        await asyncio.sleep(self.config.resend_interval)
        except TimeoutError:
            await self.close(f"the peer stopped reading: over {limit:,} bytes waited {timeout:g} s to be sent")
            return False
        except TransportClosed as exc:
            await self.close(exc.reason)
            return False
        return not self.closed

    async def _receive_frames(self, frames: list[Frame], incoming: bytes) -> None:
        """One batch of received frames, in order (raises ChannelClosedError once the link is closed)."""
        if self.closed:
            raise ChannelClosedError(self.closed_reason or "closed")
        send_batch: Callable[[list[bytes]], None] | None = getattr(self.transport, "send_batch_nowait", None)
        # The fast path needs a handler that says its room and takes output in one call, and acks
        # sent in one write; ``room`` is None while it does not apply (see LinkHandler).
        handler = self.handler
        output_room: Callable[[], int | None] | None = getattr(handler, "output_room", None)
        take_outputs: Callable[[list[bytes]], None] | None = getattr(handler, "take_outputs", None)
        fast_path = send_batch is not None and output_room is not None and take_outputs is not None
        room = output_room() if fast_path and output_room is not None else None
        taken: list[bytes] = []
        prefix = stream_prefix(self.incoming_type)
        ack_prefix = stream_prefix(MessageType.ACKNOWLEDGE)
        reorder = self.incoming
        # The next expected sequence number, kept here while the fast path takes messages (the
        # general path reads and moves ``reorder.expected`` itself), and whether successors are
        # held (the general path hands them over, so the fast path stays out of its way).
        expected = reorder.expected
        nothing_held = not len(reorder)
        window = self.window
        sha256 = hashlib.sha256
        unpack = _HEADER_FIELDS.unpack_from
        ack_ids: list[bytes] = []  # the message ids and sequence numbers the fast path acknowledges
        ack_sequences: list[int] = []
        now = self.clock()
        acknowledged = False
        sample: float | None = None  # the batch's newest clean round trip: one RTT sample per read
        try:
            for frame in frames:
                if type(frame) is not bytes:
                    # Quoted (repr): the far end's text, on the engineer's terminal under the CLI.
                    logger.warning("ignoring a text frame on the data channel: %r", frame[:80])
                    continue
                if len(frame) >= PAYLOAD_OFFSET:
                    head, sequence_number, wire_id, digest, payload_type, payload_length = unpack(frame)
                    if head == ack_prefix:
                        payload = frame[PAYLOAD_OFFSET:]
                        if payload_length == len(payload) and sha256(payload).digest() == digest:
                            acked = acknowledged_sequence(payload)
                            if acked is not None:
                                acknowledged = True
                                rtt = window.acknowledge(acked, now)
                                if rtt is not None:
                                    sample = rtt
                                continue
                    elif (
                        head == prefix
                        and room is not None
                        and payload_type == _OUTPUT
                        and sequence_number == expected
                        and nothing_held
                    ):
                        # The next expected output message, intact: accepted, acknowledged and taken at once.
                        payload = frame[PAYLOAD_OFFSET:]
                        if payload_length == len(payload) and (not payload or sha256(payload).digest() == digest):
                            if room > 0:
                                if payload:
                                    taken.append(payload)
                                    room -= payload_length
                                ack_ids.append(wire_id)
                                ack_sequences.append(sequence_number)
                                expected += 1
                            # No room: neither acknowledged nor processed; the peer resends it.
                            continue
                        # Damaged: the general path says what is wrong, and drops it unacknowledged.
                if taken and take_outputs is not None:
                    # What the fast path took goes first, so the general path sees it handed over.
                    take_outputs(taken)
                    taken = []
                reorder.expected = expected
                try:
                    fast = read_stream_message(frame, incoming)
                    if fast is not None:
                        await self._receive_sequenced(fast)
                    else:
                        try:
                            message = ClientMessage.decode(frame)
                        except MessageError as exc:
                            # Not acknowledged: if it was a stream message, its sender will resend it.
                            logger.warning("dropping an invalid frame: %s", exc)
                            continue
                        await self.receive(message)
                finally:
                    expected = reorder.expected
                    nothing_held = not len(reorder)
                if self.closed:
                    raise ChannelClosedError(self.closed_reason or "closed")
                if fast_path and output_room is not None:
                    room = output_room()
        finally:
            reorder.expected = expected
            if taken and take_outputs is not None:
                take_outputs(taken)
            if sample is not None:
                self.rtt.observe(sample)
            if ack_ids and send_batch is not None:
                acks = acknowledge_frames(
                    quoted_type(self.incoming_type), ack_ids, ack_sequences, time.time_ns() // 1_000_000
                )
                try:
                    send_batch(acks)
                except TransportClosed as exc:
                    # Closing needs the loop: the receive loop sees the transport closed on its next recv().
                    logger.debug("acknowledges not sent: %s", exc.reason)
        if acknowledged and self._waiting:
            await self._notify()

    async def receive(self, message: ClientMessage) -> None:
        """Process one decoded message (the receive loop's body; tests call it directly)."""
        if message.message_type == self.incoming_type:
            await self._receive_sequenced(message)
        elif message.message_type == MessageType.ACKNOWLEDGE:
            await self._receive_ack(message)
        else:
            await self.handler.control(message)

    async def _receive_ack(self, message: ClientMessage) -> None:
        try:
            ack = AcknowledgeContent.from_payload(message.payload)
        except MessageError as exc:
            logger.warning("ignoring an unreadable acknowledge: %s", exc)
            return
        self._acknowledged(ack.sequence_number)
        await self._notify()

    def _acknowledged(self, sequence_number: int) -> None:
        sample = self.window.acknowledge(sequence_number, self.clock())
        if sample is not None:
            self.rtt.observe(sample)

    async def _receive_sequenced(self, message: ClientMessage) -> None:
        sequence_number = message.sequence_number
        position = self.incoming.position(sequence_number)
        if position == "past" or (position == "future" and self.incoming.holds(sequence_number)):
            # A copy of a message acknowledged already: its sender missed our ack, unless copies
            # come faster than a sender resends (a flood), which are dropped unanswered.
            if self._repeats.answer(sequence_number, self.clock(), self.rtt.rto):
                await self._acknowledge(message)
            return
        if position == "future":
            size = PAYLOAD_OFFSET + len(message.payload)
            if self._takes_ahead(message) and self.incoming.hold(sequence_number, message, size):
                await self._acknowledge(message)
            return
        if not self.handler.accepts(message):
            return
        if self._send_nowait is not None:
            self._acknowledge_nowait(message)
        else:
            await self._acknowledge(message)
        self.incoming.advance()
        await self.handler.deliver(message)
        while (held := self.incoming.pop_next()) is not None:
            await self.handler.deliver(held)

    def _takes_ahead(self, message: ClientMessage) -> bool:
        """May a message ahead of the expected one be held (room in the buffer aside)?"""
        if self.config.ask_handler_ahead:
            return self.handler.accepts(message)
        # Whatever the handler's state, except while it has no room: a reader that blocks on its
        # output (the agent in conn.Write) reads nothing then, so nothing read meanwhile is held.
        room: Event | asyncio.Event | None = getattr(self.handler, "room", None)
        return room is None or room.is_set()

    async def _acknowledge(self, message: ClientMessage) -> None:
        frame = acknowledge_frame(message)
        if self._send_nowait is None:
            await self._send_frame(frame)
            return
        # Never waits for the socket: acks are small, and the receive loop must keep reading.
        try:
            self._send_nowait(frame)
        except TransportClosed as exc:
            await self.close(exc.reason)
            raise ChannelClosedError(exc.reason) from exc

    def _acknowledge_nowait(self, message: ClientMessage) -> None:
        """``_acknowledge`` without a coroutine, for a transport that queues frames (the usual case)."""
        assert self._send_nowait is not None
        try:
            self._send_nowait(acknowledge_frame(message))
        except TransportClosed as exc:
            # Closing needs the loop: the receive loop sees the transport closed on its next recv().
            logger.debug("acknowledge not sent: %s", exc.reason)
