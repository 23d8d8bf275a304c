"""The hot path of bulk transfer: frames the link builds from its own values.

ClientMessage validates every field, which is right for anything built from outside values;
the frames below are built from values the link itself chose, once per message of a bulk
transfer, so they skip the checks and the dataclass (the bytes are the same).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import struct
import time
import uuid
from binascii import hexlify

from ssmchannel.messages.frames import (
    _HEADER,
    CONTROL_FLAGS,
    FLAG_SYN,
    HEADER_LENGTH,
    MESSAGE_TYPE_LENGTH,
    PAYLOAD_OFFSET,
    SCHEMA_VERSION,
    ClientMessage,
    MessageType,
    _ids,
    uuid_from_wire,
)
from ssmchannel.messages.payloads import AcknowledgeContent

_PADDED_TYPES = {kind.value: kind.value.encode("ascii").ljust(MESSAGE_TYPE_LENGTH, b" ") for kind in MessageType}
_QUOTED_TYPES = {kind.value: json.dumps(kind.value).encode() for kind in MessageType}
_ACK_TEMPLATE = (
    b'{"AcknowledgedMessageType":%s,"AcknowledgedMessageId":"%s",'
    b'"AcknowledgedMessageSequenceNumber":%d,"IsSequentialMessage":true}'
)
# The same JSON in two halves around the quoted type, with the id's five groups as fields.
_ACK_ID_TEMPLATE = _ACK_TEMPLATE.replace(b'"%s",', b'"%s-%s-%s-%s-%s",').split(b"%s", 1)
# The header in two parts: what every ack of a batch shares (up to MessageId), and the rest
# (MessageId as its two wire halves, PayloadDigest, PayloadType, PayloadLength).
_ACK_HEAD = struct.Struct(">I32sIQqQ")
_ACK_TAIL = struct.Struct(">Q8s32sII")
# The whole header with MessageId as its two wire halves (the low one a counter, see below).
_STREAM_HEADER = struct.Struct(">I32sIQqQQ8s32sII")
assert _STREAM_HEADER.size == PAYLOAD_OFFSET
assert _ACK_HEAD.size + _ACK_TAIL.size == PAYLOAD_OFFSET
# Message ids need only be unique (see frames.new_message_id): a random high half per process,
# with the version-4 bits, and a counter from a random start in the low half, with the variant
# bits. Cheaper than 128 random bits per message, which bulk transfer pays twice per 1,024 bytes.
_ID_HIGH = ((_ids.getrandbits(64) & ~0xF000) | 0x4000).to_bytes(8, "big")
_ID_COUNTER = itertools.count(_ids.getrandbits(60))
_ID_LOW_MASK = (1 << 62) - 1
_ID_VARIANT = 1 << 63


def _new_wire_id() -> bytes:
    """A new message id (a version 4 UUID), already in wire order (low half first)."""
    return ((next(_ID_COUNTER) & _ID_LOW_MASK) | _ID_VARIANT).to_bytes(8, "big") + _ID_HIGH


def encode_frame(
    message_type: str, sequence_number: int, flags: int, payload_type: int, payload: bytes, now_ms: int | None = None
) -> bytes:
    """One frame, like ``ClientMessage(...).encode()`` with a new id and the current time (or ``now_ms``).

    For the link's own messages: ``message_type`` must be one of MessageType, and the numbers
    in range (a sequence number the link counted, flags and payload types it knows).
    """
    header = _HEADER.pack(
        HEADER_LENGTH,
        _PADDED_TYPES[message_type],
        SCHEMA_VERSION,
        time.time_ns() // 1_000_000 if now_ms is None else now_ms,
        sequence_number,
        flags,
        _new_wire_id(),
        hashlib.sha256(payload).digest(),
        payload_type,
        len(payload),
    )
    return header + payload


def encode_stream_frames(
    message_type: str,
    first_sequence_number: int,
    payload_type: int,
    data: bytes,
    start: int,
    stop: int,
    chunk_size: int,
    now_ms: int,
    *,
    syn_sequence_number: int = -1,
) -> list[bytes]:
    """``data[start:stop]`` cut into frames of ``chunk_size`` bytes of payload (the last may be
    shorter), numbered from ``first_sequence_number``.

    Each the same bytes as ``encode_frame`` with flags 0 (FLAG_SYN for ``syn_sequence_number``),
    a new id and CreatedDate ``now_ms``: for the link's bulk output, with the batch's shared
    values looked up once.
    """
    pack = _STREAM_HEADER.pack
    padded = _PADDED_TYPES[message_type]
    sha256 = hashlib.sha256
    counter, low_mask, variant, high = _ID_COUNTER, _ID_LOW_MASK, _ID_VARIANT, _ID_HIGH
    frames = []
    sequence_number = first_sequence_number
    for at in range(start, stop, chunk_size):
        end = at + chunk_size
        payload = data[at : end if end < stop else stop]
        header = pack(
            HEADER_LENGTH,
            padded,
            SCHEMA_VERSION,
            now_ms,
            sequence_number,
            FLAG_SYN if sequence_number == syn_sequence_number else 0,
            (next(counter) & low_mask) | variant,
            high,
            sha256(payload).digest(),
            payload_type,
            len(payload),
        )
        frames.append(header + payload)
        sequence_number += 1
    return frames


def acknowledge_frame(message: ClientMessage) -> bytes:
    """The acknowledge frame for a received sequenced message, as bytes (see acknowledge_message)."""
    kind = message.message_type
    quoted = _QUOTED_TYPES.get(kind) or json.dumps(kind).encode()
    if type(message) is ReceivedMessage:
        # The UUID's text straight from the wire bytes (low half first), without a UUID object.
        wire = message.wire_id
        hexed = (wire[8:12].hex(), wire[12:14].hex(), wire[14:16].hex(), wire[:2].hex(), wire[2:8].hex())
        id_text = "-".join(hexed).encode()
    else:
        id_text = str(message.message_id).encode()
    payload = _ACK_TEMPLATE % (quoted, id_text, message.sequence_number)
    return encode_frame(MessageType.ACKNOWLEDGE, 0, CONTROL_FLAGS, 0, payload)


def quoted_type(message_type: str) -> bytes:
    """A message type as the acknowledge's JSON quotes it."""
    return _QUOTED_TYPES.get(message_type) or json.dumps(message_type).encode()


def acknowledge_frames(quoted: bytes, wire_ids: list[bytes], sequence_numbers: list[int], now_ms: int) -> list[bytes]:
    """The acknowledge frames for received stream messages, one each, from their headers' own bytes.

    ``quoted`` is their type as ``quoted_type`` gives it, ``wire_ids`` their 16 message-id bytes
    as they came (halves swapped), ``sequence_numbers`` theirs, ``now_ms`` the CreatedDate of
    every ack (one clock reading serves a batch). The same bytes as ``acknowledge_frame``, with
    what every ack of a batch shares (the header up to MessageId, the JSON around the id and
    number) built once, and each id's text cut from one ``hexlify``.
    """
    head = _ACK_HEAD.pack(HEADER_LENGTH, _PADDED_ACKNOWLEDGE, SCHEMA_VERSION, now_ms, 0, CONTROL_FLAGS)
    template = _ACK_ID_TEMPLATE[0] + quoted.replace(b"%", b"%%") + _ACK_ID_TEMPLATE[1]
    pack_tail = _ACK_TAIL.pack
    sha256 = hashlib.sha256
    counter, low_mask, variant, high = _ID_COUNTER, _ID_LOW_MASK, _ID_VARIANT, _ID_HIGH
    frames = []
    for wire_id, sequence_number in zip(wire_ids, sequence_numbers, strict=True):
        hexed = hexlify(wire_id)  # the UUID's text is its second half's hex, then its first's
        payload = template % (hexed[16:24], hexed[24:28], hexed[28:32], hexed[:4], hexed[4:16], sequence_number)
        tail = pack_tail((next(counter) & low_mask) | variant, high, sha256(payload).digest(), 0, len(payload))
        frames.append(head + tail + payload)
    return frames


def stream_prefix(message_type: str) -> bytes:
    """The first 36 bytes every frame of this type starts with (header length, padded type)."""
    return _HEADER_PREFIX + _PADDED_TYPES[message_type]


def acknowledge_message(message: ClientMessage) -> ClientMessage:
    """The acknowledge frame for a received sequenced message."""
    return ClientMessage(
        message_type=MessageType.ACKNOWLEDGE,
        sequence_number=0,
        flags=CONTROL_FLAGS,
        payload=AcknowledgeContent.for_message(message).to_payload(),
    )


# --- receiving -----------------------------------------------------------------------------
#
# ClientMessage.decode builds a UUID and a frozen dataclass and checks every field: about half
# of a bulk transfer's per-message work on the receiving side. The two frames a bulk transfer
# is made of, the peer's stream messages and its acknowledges, are read here with the same
# checks that matter (header length, payload length, SHA-256 digest); anything unusual returns
# None and goes through ClientMessage.decode, which says what is wrong.

_PADDED_ACKNOWLEDGE = _PADDED_TYPES[MessageType.ACKNOWLEDGE.value]
_HEADER_PREFIX = HEADER_LENGTH.to_bytes(4, "big")
_ACK_SEQUENCE = re.compile(rb'"AcknowledgedMessageSequenceNumber":(\d{1,18})[,}]')


class ReceivedMessage(ClientMessage):
    """A ClientMessage read on the fast path: its UUID is built only when someone asks for it."""

    wire_id: bytes  # the 16 message-id bytes as they came (halves swapped)

    @property
    def message_id(self) -> uuid.UUID:
        return uuid_from_wire(self.wire_id)


def padded_type(message_type: str) -> bytes:
    """A message type as it sits in the header (for comparing with ``frame[4:36]``)."""
    return _PADDED_TYPES[message_type]


def read_stream_message(frame: bytes, padded: bytes) -> ClientMessage | None:
    """The frame as a message if it is a well-formed stream message of type ``padded``; else None."""
    if len(frame) < PAYLOAD_OFFSET or frame[4:36] != padded or frame[:4] != _HEADER_PREFIX:
        return None
    (
        _,
        _,
        schema_version,
        created_date,
        sequence_number,
        flags,
        wire_id,
        digest,
        payload_type,
        payload_length,
    ) = _HEADER.unpack_from(frame)
    payload = frame[PAYLOAD_OFFSET:]
    if payload_length != len(payload) or (payload and hashlib.sha256(payload).digest() != digest):
        return None
    message = ReceivedMessage.__new__(ReceivedMessage)
    # A frozen dataclass: its fields are written past __setattr__, as its own __init__ does.
    message.__dict__.update(
        message_type=padded_message_types[padded],
        sequence_number=sequence_number,
        flags=flags,
        payload_type=payload_type,
        payload=payload,
        wire_id=wire_id,
        created_date=created_date,
        schema_version=schema_version,
    )
    return message


padded_message_types = {padded: kind for kind, padded in _PADDED_TYPES.items()}


def read_acknowledged_sequence(frame: bytes) -> int | None:
    """The sequence number a well-formed acknowledge frame acknowledges; None for anything else."""
    if len(frame) < PAYLOAD_OFFSET or frame[4:36] != _PADDED_ACKNOWLEDGE or frame[:4] != _HEADER_PREFIX:
        return None
    payload = frame[PAYLOAD_OFFSET:]
    if int.from_bytes(frame[116:120], "big") != len(payload) or hashlib.sha256(payload).digest() != frame[80:112]:
        return None
    return acknowledged_sequence(payload)


def acknowledged_sequence(payload: bytes) -> int | None:
    """The sequence number in an acknowledge's JSON of the canonical shape; None for any other."""
    found = _ACK_SEQUENCE.search(payload)
    return int(found[1]) if found is not None else None
