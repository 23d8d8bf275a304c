"""The hot path of bulk transfer: frames the link builds from its own values.

ClientMessage validates every field, which is right for anything built from outside values;
the frames below are built from values the link itself chose, once per message of a bulk
transfer, so they skip the checks and the dataclass (the bytes are the same).
"""

from __future__ import annotations

import hashlib
import json
import time

from ssmchannel.messages.frames import (
    _HEADER,
    CONTROL_FLAGS,
    HEADER_LENGTH,
    MESSAGE_TYPE_LENGTH,
    SCHEMA_VERSION,
    ClientMessage,
    MessageType,
    _ids,
)
from ssmchannel.messages.payloads import AcknowledgeContent

_PADDED_TYPES = {kind.value: kind.value.encode("ascii").ljust(MESSAGE_TYPE_LENGTH, b" ") for kind in MessageType}
_QUOTED_TYPES = {kind.value: json.dumps(kind.value).encode() for kind in MessageType}
_ACK_TEMPLATE = (
    b'{"AcknowledgedMessageType":%s,"AcknowledgedMessageId":"%s",'
    b'"AcknowledgedMessageSequenceNumber":%d,"IsSequentialMessage":true}'
)
_VERSION_4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_4_SET = (0x4000 << 64) | (0x8000 << 48)


def _new_wire_id() -> bytes:
    """A new random (version 4) message id, already in wire order (as uuid_to_wire(new_message_id()))."""
    raw = ((_ids.getrandbits(128) & _VERSION_4_CLEAR) | _VERSION_4_SET).to_bytes(16, "big")
    return raw[8:] + raw[:8]


def encode_frame(message_type: str, sequence_number: int, flags: int, payload_type: int, payload: bytes) -> bytes:
    """One frame, like ``ClientMessage(...).encode()`` with a new id and the current time.

    For the link's own messages: ``message_type`` must be one of MessageType, and the numbers
    in range (a sequence number the link counted, flags and payload types it knows).
    """
    header = _HEADER.pack(
        HEADER_LENGTH,
        _PADDED_TYPES[message_type],
        SCHEMA_VERSION,
        time.time_ns() // 1_000_000,
        sequence_number,
        flags,
        _new_wire_id(),
        hashlib.sha256(payload).digest(),
        payload_type,
        len(payload),
    )
    return header + payload


def acknowledge_frame(message: ClientMessage) -> bytes:
    """The acknowledge frame for a received sequenced message, as bytes (see acknowledge_message)."""
    kind = message.message_type
    quoted = _QUOTED_TYPES.get(kind) or json.dumps(kind).encode()
    payload = _ACK_TEMPLATE % (quoted, str(message.message_id).encode(), message.sequence_number)
    return encode_frame(MessageType.ACKNOWLEDGE, 0, CONTROL_FLAGS, 0, payload)


def acknowledge_message(message: ClientMessage) -> ClientMessage:
    """The acknowledge frame for a received sequenced message."""
    return ClientMessage(
        message_type=MessageType.ACKNOWLEDGE,
        sequence_number=0,
        flags=CONTROL_FLAGS,
        payload=AcknowledgeContent.for_message(message).to_payload(),
    )
