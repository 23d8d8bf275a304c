"""The bulk-transfer shortcuts build and take exactly what the general code does.

``ReliableLink``'s receiving fast path (``ssmchannel.receiving``) against the same link without
it, on batches of output, acknowledges, copies, gaps and damaged frames; and the batch builders
(acks, stream frames, the window's ``add_sent``, the tap's frame pieces) against their one-at-a-time
counterparts.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from ssmchannel.link import ReliableLink
from ssmchannel.messages import (
    CONTROL_FLAGS,
    FLAG_SYN,
    AcknowledgeContent,
    ClientMessage,
    MessageType,
    PayloadType,
    acknowledge_frame,
    encode_frame,
)
from ssmchannel.messages.fast import acknowledge_frames, encode_stream_frames, quoted_type
from ssmchannel.reliability import OutgoingWindow
from ssmchannel.wsframes import FrameTap


class RecordingTransport:
    """Keeps what the link sends; ``batched`` offers the one-write batch the fast path needs."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, frame: bytes) -> None:
        self.sent.append(frame)


class BatchingTransport(RecordingTransport):
    def send_batch_nowait(self, frames: list[bytes]) -> None:
        self.sent.extend(frames)


class Handler:
    def __init__(self, room: int) -> None:
        self.room = room
        self.delivered = bytearray()
        self.controls: list[str] = []  # a damaged type makes a stream message another one

    def accepts(self, message: ClientMessage) -> bool:
        return len(self.delivered) < self.room

    async def deliver(self, message: ClientMessage) -> None:
        self.delivered += message.payload

    async def control(self, message: ClientMessage) -> None:
        self.controls.append(message.message_type)


class FastHandler(Handler):
    def output_room(self) -> int:
        return self.room - len(self.delivered)

    def take_outputs(self, payloads: list[bytes]) -> None:
        self.delivered += b"".join(payloads)


def output(sequence_number: int) -> bytes:
    return encode_frame(
        MessageType.OUTPUT_STREAM_DATA, sequence_number, 0, PayloadType.OUTPUT, b"%d;" % sequence_number
    )


def ack(sequence_number: int) -> bytes:
    content = AcknowledgeContent(MessageType.INPUT_STREAM_DATA, str(uuid.uuid4()), sequence_number)
    return ClientMessage(MessageType.ACKNOWLEDGE, 0, CONTROL_FLAGS, 0, content.to_payload()).encode()


def damaged(frame: bytes, where: int) -> bytes:
    """One byte flipped where a check looks: the header's length and type, digest, lengths, payload."""
    checked = [*range(0, 36), *range(80, 112), *range(116, len(frame))]
    data = bytearray(frame)
    data[checked[where % len(checked)]] ^= 0x5A
    return bytes(data)


frame_specs = st.tuples(
    st.sampled_from(["output", "ack"]), st.integers(0, 6), st.one_of(st.none(), st.none(), st.integers(0, 10_000))
)


async def received_by(
    fast: bool, batches: list[list[bytes]], room: int
) -> tuple[bytes, list[str], list[int], list[int], int]:
    transport = BatchingTransport() if fast else RecordingTransport()
    handler = FastHandler(room) if fast else Handler(room)
    link = ReliableLink(
        transport,  # type: ignore[arg-type]
        handler,
        outgoing_type=MessageType.INPUT_STREAM_DATA,
        incoming_type=MessageType.OUTPUT_STREAM_DATA,
        clock=lambda: 5.0,
    )
    for sequence_number in range(12):  # our own messages, waiting for the acks in the batches
        link.window.mark_sent(link.window.add(sequence_number, b"x"), 1.0)
    incoming = MessageType.OUTPUT_STREAM_DATA.value.encode().ljust(32, b" ")
    for batch in batches:
        await link._receive_frames(list(batch), incoming)
    acked = sorted(
        AcknowledgeContent.from_payload(ClientMessage.decode(frame).payload).sequence_number for frame in transport.sent
    )
    return bytes(handler.delivered), handler.controls, acked, sorted(link.window._pending), link.incoming.expected


@settings(max_examples=300)
@given(st.lists(st.lists(frame_specs, max_size=12), max_size=4), st.sampled_from([1, 10, 1000]))
def test_the_fast_path_takes_acknowledges_and_refuses_what_the_general_path_does(
    batches: list[list[tuple[str, int, int | None]]], room: int
) -> None:
    frames = [
        [
            (damaged(frame, where) if where is not None else frame)
            for kind, number, where in batch
            for frame in [output(number) if kind == "output" else ack(number)]
        ]
        for batch in batches
    ]
    general = asyncio.run(received_by(False, frames, room))
    fast = asyncio.run(received_by(True, frames, room))
    assert fast == general


def test_the_fast_path_is_taken() -> None:
    """Guard: the batching link really answers in one batch (the comparison above tests something)."""
    transport = BatchingTransport()
    handler = FastHandler(1 << 20)
    link = ReliableLink(
        transport,  # type: ignore[arg-type]
        handler,
        outgoing_type=MessageType.INPUT_STREAM_DATA,
        incoming_type=MessageType.OUTPUT_STREAM_DATA,
    )
    batches: list[list[bytes]] = []
    transport.send_batch_nowait = batches.append  # type: ignore[method-assign,assignment]
    incoming = MessageType.OUTPUT_STREAM_DATA.value.encode().ljust(32, b" ")
    asyncio.run(link._receive_frames([output(0), output(1), output(2)], incoming))
    assert len(batches) == 1 and len(batches[0]) == 3
    assert bytes(handler.delivered) == b"0;1;2;"


@given(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32),
    st.lists(st.tuples(st.uuids(), st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=5),
    st.integers(0, 2**63 - 1),
)
def test_acknowledge_frames_match_acknowledge_frame(
    kind: str, received: list[tuple[uuid.UUID, int]], now_ms: int
) -> None:
    messages = [ClientMessage(kind, number, 0, 1, b"", message_id) for message_id, number in received]
    wire_ids = [message.encode()[64:80] for message in messages]
    frames = acknowledge_frames(quoted_type(kind), wire_ids, [number for _, number in received], now_ms)
    assert len(frames) == len(messages)
    ids = set()
    for frame, message in zip(frames, messages, strict=True):
        one = acknowledge_frame(message)
        assert frame[120:] == one[120:]  # the same JSON, byte for byte
        # The same header, but for CreatedDate (40:48) and MessageId (64:80); digest and length follow the payload.
        assert frame[:40] == one[:40] and frame[48:64] == one[48:64] and frame[80:120] == one[80:120]
        decoded = ClientMessage.decode(frame)
        assert decoded.created_date == now_ms
        assert decoded.message_id.version == 4
        ids.add(decoded.message_id)
    assert len(ids) == len(frames)


@given(
    st.binary(max_size=5000),
    st.integers(0, 5000),
    st.integers(1, 2000),
    st.integers(0, 2**40),
    st.booleans(),
)
def test_encode_stream_frames_match_encode_frame(data: bytes, start: int, chunk: int, first: int, syn: bool) -> None:
    start = min(start, len(data))
    frames = encode_stream_frames(
        MessageType.OUTPUT_STREAM_DATA,
        first,
        PayloadType.OUTPUT,
        data,
        start,
        len(data),
        chunk,
        1234,
        syn_sequence_number=first if syn else -1,
    )
    pieces = [data[at : at + chunk] for at in range(start, len(data), chunk)]
    assert len(frames) == len(pieces)
    for number, (frame, piece) in enumerate(zip(frames, pieces, strict=True), first):
        flags = FLAG_SYN if syn and number == first else 0
        one = encode_frame(MessageType.OUTPUT_STREAM_DATA, number, flags, PayloadType.OUTPUT, piece, 1234)
        assert frame[:64] == one[:64] and frame[80:] == one[80:]  # all but MessageId
        assert frame[80:112] == hashlib.sha256(piece).digest()
        assert ClientMessage.decode(frame).message_id.version == 4


@given(st.lists(st.integers(0, 3), min_size=1, max_size=6), st.lists(st.binary(max_size=4), max_size=6))
def test_add_sent_is_add_then_mark_sent(gaps: list[int], frames: list[bytes]) -> None:
    one, batch = OutgoingWindow(), OutgoingWindow()
    first = 0
    for step, gap in enumerate(gaps):
        first += gap
        now = float(step)
        for number, frame in enumerate(frames, first):
            if number not in one:
                one.mark_sent(one.add(number, frame), now)
        fresh = [frame for number, frame in enumerate(frames, first) if number not in batch]
        if len(fresh) == len(frames):
            batch.add_sent(first, frames, now)
        else:
            for number, frame in enumerate(frames, first):
                if number not in batch:
                    batch.mark_sent(batch.add(number, frame), now)
        first += len(frames)
    assert vars(batch) == vars(one)


def test_add_sent_refuses_a_number_already_waiting() -> None:
    window = OutgoingWindow()
    window.add_sent(0, [b"a", b"b"], 0.0)
    try:
        window.add_sent(1, [b"c"], 1.0)
    except ValueError:
        pass
    else:
        raise AssertionError("a number already waiting was added again")
    assert window.bytes == 2 and len(window) == 2


@given(st.lists(st.sampled_from([0, 1, 125, 126, 127, 300, 65535, 65536, 70000]), max_size=6), st.booleans())
def test_frame_pieces_join_into_the_frames_encode_binary_builds(sizes: list[int], client: bool) -> None:
    tap = FrameTap.__new__(FrameTap)
    tap.is_client = client
    payloads = [bytes([size % 251]) * size for size in sizes]
    joined = b"".join(tap.encode_many(payloads))
    at = 0
    for payload in payloads:
        one = tap.encode_binary(payload)  # another mask for a client: compare unmasked
        header = len(one) - len(payload) - (4 if client else 0)
        assert joined[at : at + header] == one[:header]
        at += header
        if client:
            mask = joined[at : at + 4]
            at += 4
            assert bytes(b ^ mask[i % 4] for i, b in enumerate(joined[at : at + len(payload)])) == payload
        else:
            assert joined[at : at + len(payload)] == payload
        at += len(payload)
    assert at == len(joined)
