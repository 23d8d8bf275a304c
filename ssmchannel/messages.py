"""The frames and payloads of the Session Manager data channel.

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

The layout and the payload schemas were read from aws/session-manager-plugin (src/message)
and the agent's side (aws/amazon-ssm-agent); the code here is our own.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import random
import re
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

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
            raise MessageError(f"payload digest mismatch in {message_type} #{sequence_number}")
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


# --- JSON payloads ---------------------------------------------------------------------


def _load_object(payload: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"{what} payload is not JSON") from exc
    if not isinstance(value, dict):
        raise MessageError(f"{what} payload is not a JSON object")
    return value


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, default: Any = ...) -> Any:
    if key not in obj or obj[key] is None:
        if default is ...:
            raise MessageError(f"{what} lacks {key}")
        return default
    value = obj[key]
    # bool is an int in Python; a JSON true is never a valid number here.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MessageError(f"{what}.{key} has the wrong type")
    return value


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True)
class OpenDataChannelInput:
    """The TEXT frame that opens the channel: it carries the token StartSession returned."""

    token_value: str
    client_id: str
    client_version: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    message_schema_version: str = MESSAGE_SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "MessageSchemaVersion": self.message_schema_version,
                "RequestId": self.request_id,
                "TokenValue": self.token_value,
                "ClientId": self.client_id,
                "ClientVersion": self.client_version,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> OpenDataChannelInput:
        what = "open data channel input"
        obj = _load_object(text, what)
        return cls(
            token_value=_field(obj, "TokenValue", str, what),
            client_id=_field(obj, "ClientId", str, what, ""),
            client_version=_field(obj, "ClientVersion", str, what, ""),
            request_id=_field(obj, "RequestId", str, what, ""),
            message_schema_version=_field(obj, "MessageSchemaVersion", str, what),
        )


_CANONICAL_ACK = re.compile(
    rb'\{"AcknowledgedMessageType":"([a-z_]{1,32})","AcknowledgedMessageId":"([0-9a-fA-F-]{0,36})",'
    rb'"AcknowledgedMessageSequenceNumber":(-?[0-9]{1,18}),"IsSequentialMessage":(true|false)\}'
)


@dataclass(frozen=True)
class AcknowledgeContent:
    """Payload of an acknowledge message: which sequenced message arrived."""

    message_type: str
    message_id: str  # the acknowledged message's UUID, hyphenated
    sequence_number: int
    is_sequential_message: bool = True

    @classmethod
    def for_message(cls, message: ClientMessage) -> AcknowledgeContent:
        return cls(message.message_type, str(message.message_id), message.sequence_number)

    def to_payload(self) -> bytes:
        return _dump(
            {
                "AcknowledgedMessageType": self.message_type,
                "AcknowledgedMessageId": self.message_id,
                "AcknowledgedMessageSequenceNumber": self.sequence_number,
                "IsSequentialMessage": self.is_sequential_message,
            }
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> AcknowledgeContent:
        what = "acknowledge"
        # Both ends write this JSON in one shape (Go's encoding/json, our _dump): read that
        # shape without the JSON parser; anything else goes through it.
        canonical = _CANONICAL_ACK.fullmatch(payload)
        if canonical is not None:
            return cls(
                message_type=canonical[1].decode("ascii"),
                message_id=canonical[2].decode("ascii"),
                sequence_number=int(canonical[3]),
                is_sequential_message=canonical[4] == b"true",
            )
        obj = _load_object(payload, what)
        return cls(
            message_type=_field(obj, "AcknowledgedMessageType", str, what, ""),
            message_id=_field(obj, "AcknowledgedMessageId", str, what, ""),
            sequence_number=_field(obj, "AcknowledgedMessageSequenceNumber", int, what),
            is_sequential_message=_field(obj, "IsSequentialMessage", bool, what, True),
        )


@dataclass(frozen=True)
class RequestedClientAction:
    action_type: str
    action_parameters: Any = None


@dataclass(frozen=True)
class HandshakeRequest:
    """The agent's first sequenced message: its version and what it asks the client to do."""

    agent_version: str
    requested_client_actions: tuple[RequestedClientAction, ...] = ()

    def to_payload(self) -> bytes:
        return _dump(
            {
                "AgentVersion": self.agent_version,
                "RequestedClientActions": [
                    {"ActionType": a.action_type, "ActionParameters": a.action_parameters}
                    for a in self.requested_client_actions
                ],
            }
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> HandshakeRequest:
        what = "handshake request"
        obj = _load_object(payload, what)
        actions = []
        for raw in _field(obj, "RequestedClientActions", list, what, []):
            if not isinstance(raw, dict):
                raise MessageError(f"{what} action is not an object")
            actions.append(
                RequestedClientAction(
                    action_type=_field(raw, "ActionType", str, what),
                    action_parameters=raw.get("ActionParameters"),
                )
            )
        return cls(agent_version=_field(obj, "AgentVersion", str, what, ""), requested_client_actions=tuple(actions))


@dataclass(frozen=True)
class ProcessedClientAction:
    action_type: str
    action_status: int
    action_result: Any = None
    error: str = ""


@dataclass(frozen=True)
class HandshakeResponse:
    """The client's answer: its version and the outcome of every requested action."""

    client_version: str
    processed_client_actions: tuple[ProcessedClientAction, ...] = ()
    errors: tuple[str, ...] = ()

    def to_payload(self) -> bytes:
        return _dump(
            {
                "ClientVersion": self.client_version,
                "ProcessedClientActions": [
                    {
                        "ActionType": a.action_type,
                        "ActionStatus": a.action_status,
                        "ActionResult": a.action_result,
                        "Error": a.error,
                    }
                    for a in self.processed_client_actions
                ],
                "Errors": list(self.errors),
            }
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> HandshakeResponse:
        what = "handshake response"
        obj = _load_object(payload, what)
        actions = []
        for raw in _field(obj, "ProcessedClientActions", list, what, []):
            if not isinstance(raw, dict):
                raise MessageError(f"{what} action is not an object")
            actions.append(
                ProcessedClientAction(
                    action_type=_field(raw, "ActionType", str, what),
                    action_status=_field(raw, "ActionStatus", int, what, 0),
                    action_result=raw.get("ActionResult"),
                    error=_field(raw, "Error", str, what, ""),
                )
            )
        errors = _field(obj, "Errors", list, what, [])
        if not all(isinstance(e, str) for e in errors):
            raise MessageError(f"{what}.Errors must be strings")
        return cls(
            client_version=_field(obj, "ClientVersion", str, what, ""),
            processed_client_actions=tuple(actions),
            errors=tuple(errors),
        )


@dataclass(frozen=True)
class HandshakeComplete:
    """The agent's last handshake message; the time is a Go time.Duration (nanoseconds)."""

    handshake_time_to_complete_ns: int = 0
    customer_message: str = ""

    def to_payload(self) -> bytes:
        return _dump(
            {"HandshakeTimeToComplete": self.handshake_time_to_complete_ns, "CustomerMessage": self.customer_message}
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> HandshakeComplete:
        what = "handshake complete"
        obj = _load_object(payload, what)
        return cls(
            handshake_time_to_complete_ns=_field(obj, "HandshakeTimeToComplete", int, what, 0),
            customer_message=_field(obj, "CustomerMessage", str, what, ""),
        )


@dataclass(frozen=True)
class ChannelClosed:
    """Payload of channel_closed: the service ends the session, ``output`` says why (may be empty)."""

    session_id: str
    output: str = ""
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_date: str = ""
    destination_id: str = ""
    message_type: str = MessageType.CHANNEL_CLOSED.value
    schema_version: int = SCHEMA_VERSION

    def to_payload(self) -> bytes:
        return _dump(
            {
                "MessageId": self.message_id,
                "CreatedDate": self.created_date,
                "DestinationId": self.destination_id,
                "SessionId": self.session_id,
                "MessageType": self.message_type,
                "SchemaVersion": self.schema_version,
                "Output": self.output,
            }
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> ChannelClosed:
        what = "channel_closed"
        obj = _load_object(payload, what)
        return cls(
            session_id=_field(obj, "SessionId", str, what, ""),
            output=_field(obj, "Output", str, what, ""),
            message_id=_field(obj, "MessageId", str, what, ""),
            created_date=_field(obj, "CreatedDate", str, what, ""),
            destination_id=_field(obj, "DestinationId", str, what, ""),
            message_type=_field(obj, "MessageType", str, what, MessageType.CHANNEL_CLOSED.value),
            schema_version=_field(obj, "SchemaVersion", int, what, SCHEMA_VERSION),
        )


def encode_flag(flag: Flag | int) -> bytes:
    return struct.pack(">I", int(flag))


def decode_flag(payload: bytes) -> int:
    """The flag number; unknown values are returned as plain ints, not rejected."""
    if len(payload) != 4:
        raise MessageError(f"flag payload must be 4 bytes, got {len(payload)}")
    (value,) = struct.unpack(">I", payload)
    try:
        return Flag(value)
    except ValueError:
        return int(value)


# --- the hot path of bulk transfer --------------------------------------------------------
# ClientMessage validates every field, which is right for anything built from outside values;
# the frames below are built from values the link itself chose, once per message of a bulk
# transfer, so they skip the checks and the dataclass (the bytes are the same).

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


_VERSION_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,7}")


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.3.722.0' -> (2, 3, 722, 0); anything else compares as (0,), older than every real version.

    The one parser for SSM Agent versions (the portal's minimum, the channel's features). A version
    comes from the agent, so it is hostile: only dotted ASCII numbers count; signs, spaces, other
    digits ("٢") and empty parts, which ``int()`` would accept or choke on, make it unknown.
    """
    if not _VERSION_RE.fullmatch(version):
        return (0,)
    return tuple(int(part) for part in version.split("."))
