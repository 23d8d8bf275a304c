"""The binary frame of the Session Manager data channel: the header, its enums, ids.

After the opening TEXT frame (``open_frame``), every WebSocket message in either direction
is one binary ClientMessage, big-endian::

    offset  size  field
         0     4  HeaderLength      u32, always 116: the header up to, not including, PayloadLength
         4    32  MessageType       ASCII, padded with spaces
        36     4  SchemaVersion     u32 (1)
        40     8  CreatedDate       u64, milliseconds since the epoch
        48     8  SequenceNumber    i64
        56     8  Flags             u64 (SYN=1, FIN=2)
        64    16  MessageId         a UUID, its two 8-byte halves swapped (low half first)
        80    32  PayloadDigest     SHA-256 of the payload
       112     4  PayloadType       u32
       116     4  PayloadLength     u32
       120     n  Payload

The layout was read from aws/session-manager-plugin (src/message) and the agent's side
(aws/amazon-ssm-agent); the code here is our own.
"""

from __future__ import annotations

import enum
import hashlib
import os
import random
import struct
import time
import uuid
from dataclasses import dataclass, field

from ssmchannel.errors import MessageError

HEADER_LENGTH = 116
PAYLOAD_OFFSET = 120
MESSAGE_TYPE_LENGTH = 32
SCHEMA_VERSION = 1
MESSAGE_SCHEMA_VERSION = "1.0"  # of the opening TEXT frame

# Control messages (acknowledge, channel_closed) are not part of the sequenced stream:
# the plugin and the agent send them with sequence number 0 and SYN|FIN set.
CONTROL_FLAGS = 3
FLAG_SYN = 1
FLAG_FIN = 2

_HEADER = struct.Struct(">I32sIQqQ16s32sII")
assert _HEADER.size == PAYLOAD_OFFSET

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = 2**64 - 1
_UINT32 = 2**32 - 1


class MessageType(enum.StrEnum):
    INPUT_STREAM_DATA = "input_stream_data"  # client -> agent
    OUTPUT_STREAM_DATA = "output_stream_data"  # agent -> client
    ACKNOWLEDGE = "acknowledge"
    CHANNEL_CLOSED = "channel_closed"
    START_PUBLICATION = "start_publication"
    PAUSE_PUBLICATION = "pause_publication"


class PayloadType(enum.IntEnum):
    OUTPUT = 1
    ERROR = 2
    SIZE = 3
    PARAMETER = 4
    HANDSHAKE_REQUEST = 5
    HANDSHAKE_RESPONSE = 6
    HANDSHAKE_COMPLETE = 7
    ENC_CHALLENGE_REQUEST = 8
    ENC_CHALLENGE_RESPONSE = 9
    FLAG = 10
    STDERR = 11
    EXIT_CODE = 12


class Flag(enum.IntEnum):
    """The u32 carried by a FLAG payload."""

    DISCONNECT_TO_PORT = 1
    TERMINATE_SESSION = 2
    CONNECT_TO_PORT_ERROR = 3


class ActionType(enum.StrEnum):
    KMS_ENCRYPTION = "KMSEncryption"
    SESSION_TYPE = "SessionType"


class ActionStatus(enum.IntEnum):
    SUCCESS = 1
    FAILED = 2
    UNSUPPORTED = 3


class SessionType(enum.StrEnum):
    """What the agent's handshake says the session is (the plugin's names)."""

    STANDARD_STREAM = "Standard_Stream"  # shell
    PORT = "Port"  # AWS-StartSSHSession and the port-forwarding documents
    INTERACTIVE_COMMANDS = "InteractiveCommands"
    NON_INTERACTIVE_COMMANDS = "NonInteractiveCommands"


# Message ids only need to be unique, not secret: a seeded generator is ~50x cheaper than
# uuid4()'s os.urandom call per message, which showed up first in profiles of bulk transfer.
_ids = random.Random(os.urandom(32))  # noqa: S311  # nosec B311


def new_message_id() -> uuid.UUID:
    """A random (version 4) UUID for a new message."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def uuid_to_wire(message_id: uuid.UUID) -> bytes:
    """The plugin writes a UUID as two big-endian longs, least significant half first."""
    raw = message_id.bytes
    return raw[8:] + raw[:8]


def uuid_from_wire(raw: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=raw[8:] + raw[:8])


@dataclass(frozen=True)
class ClientMessage:
    """One binary frame of the data channel (the plugin's ClientMessage, the agent's AgentMessage)."""

    message_type: str
    sequence_number: int = 0
    flags: int = 0
    payload_type: int = 0
    payload: bytes = b""
    message_id: uuid.UUID = field(default_factory=new_message_id)
    created_date: int = field(default_factory=now_ms)
    schema_version: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        name = self.message_type.encode("ascii")
        if not name or len(name) > MESSAGE_TYPE_LENGTH:
            raise MessageError(f"message type {self.message_type!r} must be 1 to 32 ASCII characters")
        if not _INT64[0] <= self.sequence_number <= _INT64[1]:
            raise MessageError(f"sequence number {self.sequence_number} does not fit in an i64")
        for label, value, limit in (
            ("flags", self.flags, _UINT64),
            ("created date", self.created_date, _UINT64),
            ("schema version", self.schema_version, _UINT32),
            ("payload type", self.payload_type, _UINT32),
            ("payload length", len(self.payload), _UINT32),
        ):
            if not 0 <= value <= limit:
                raise MessageError(f"{label} {value} is out of range")
        header = _HEADER.pack(
            HEADER_LENGTH,
            name.ljust(MESSAGE_TYPE_LENGTH, b" "),
            self.schema_version,
            self.created_date,
            self.sequence_number,
            self.flags,
            uuid_to_wire(self.message_id),
            hashlib.sha256(self.payload).digest(),
            self.payload_type,
            len(self.payload),
        )
        return header + self.payload

    @classmethod
    def decode(cls, frame: bytes) -> ClientMessage:
        """Parse and validate one frame; any inconsistency raises MessageError."""
        if len(frame) < PAYLOAD_OFFSET:
            raise MessageError(f"frame of {len(frame)} bytes is shorter than the {PAYLOAD_OFFSET}-byte header")
        (
            header_length,
            raw_type,
            schema_version,
            created_date,
            sequence_number,
            flags,
            raw_id,
            digest,
            payload_type,
            payload_length,
        ) = _HEADER.unpack_from(frame)
        if header_length != HEADER_LENGTH:
            raise MessageError(f"header length {header_length}, expected {HEADER_LENGTH}")
        payload = bytes(frame[PAYLOAD_OFFSET:])
        if payload_length != len(payload):
            raise MessageError(f"payload length field says {payload_length}, frame carries {len(payload)}")
        try:
            message_type = raw_type.strip(b" \x00").decode("ascii")
        except UnicodeDecodeError as exc:
            raise MessageError("message type is not ASCII") from exc
        if not message_type:
            raise MessageError("message type is empty")
        # Like the plugin: an empty payload, or a publication notice, carries no digest to check.
        exempt = message_type in (MessageType.START_PUBLICATION, MessageType.PAUSE_PUBLICATION)
        if payload and not exempt and hashlib.sha256(payload).digest() != digest:
            raise MessageError(f"payload digest mismatch in {message_type!r} #{sequence_number}")
        return cls(
            message_type=message_type,
            sequence_number=sequence_number,
            flags=flags,
            payload_type=payload_type,
            payload=payload,
            message_id=uuid_from_wire(raw_id),
            created_date=created_date,
            schema_version=schema_version,
        )


def peek_message_type(frame: bytes) -> str | None:
    """The message type of a frame without validating the rest (for fault injection and logs)."""
    if len(frame) < PAYLOAD_OFFSET:
        return None
    try:
        return bytes(frame[4 : 4 + MESSAGE_TYPE_LENGTH]).strip(b" \x00").decode("ascii")
    except UnicodeDecodeError:
        return None
