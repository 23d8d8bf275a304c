"""The JSON payloads of the data channel (opening, acknowledge, handshake, channel_closed) and FLAG.

The schemas were read from aws/session-manager-plugin (src/message) and the agent's side
(aws/amazon-ssm-agent); the code here is our own.
"""

from __future__ import annotations

import itertools
import json
import re
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from ssmchannel.errors import MessageError
from ssmchannel.messages.frames import MESSAGE_SCHEMA_VERSION, SCHEMA_VERSION, ClientMessage, Flag, MessageType

# How deeply a payload's JSON may nest. The deepest the agent or the plugin sends (a HandshakeRequest's
# session properties) is about 5 levels; a far end's "[[[[..." within MAX_MESSAGE_SIZE would
# otherwise take the parser to its recursion limit.
MAX_JSON_DEPTH = 32

# A JSON string (its brackets are not structure), then what is left: brackets as +1 / -1. One left
# open runs to the payload's end (json.loads refuses it anyway): matched from its first quote, each
# byte once and never retried (possessive), so a far end's unclosed string costs one pass, not one
# per quote after it.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.|\\\Z)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")


def _too_deep(payload: bytes) -> bool:
    """Does the JSON in ``payload`` nest beyond MAX_JSON_DEPTH? Checked in C-speed passes, before parsing."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_JSON_DEPTH:
        return False  # every payload we expect: no scan needed
    brackets = _JSON_STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    steps = memoryview(brackets.translate(_BRACKET_STEPS)).cast("b")
    return max(itertools.accumulate(steps), default=0) > MAX_JSON_DEPTH


def _load_object(payload: bytes | str, what: str) -> dict[str, Any]:
    """The JSON object in a far end's payload; MessageError for anything else, however malformed."""
    raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    if _too_deep(raw):
        raise MessageError(f"{what} payload nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(payload)
    except Exception as exc:  # ValueError, UnicodeDecodeError, RecursionError: whatever the parser raises
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
