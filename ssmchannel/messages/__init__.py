"""The frames and payloads of the Session Manager data channel.

``frames``: the binary ClientMessage (its header layout is in that module's docstring), its
enums and ids; ``payloads``: the JSON payloads and FLAG; ``fast``: the frames the link builds
from its own values on the hot path of bulk transfer; ``versions``: SSM Agent versions.
Everything is importable from ``ssmchannel.messages`` as before.
"""

from ssmchannel.messages.fast import acknowledge_frame, acknowledge_message, encode_frame
from ssmchannel.messages.frames import (
    CONTROL_FLAGS,
    FLAG_FIN,
    FLAG_SYN,
    HEADER_LENGTH,
    MESSAGE_SCHEMA_VERSION,
    MESSAGE_TYPE_LENGTH,
    PAYLOAD_OFFSET,
    SCHEMA_VERSION,
    ActionStatus,
    ActionType,
    ClientMessage,
    Flag,
    MessageType,
    PayloadType,
    SessionType,
    new_message_id,
    now_ms,
    peek_message_type,
    uuid_from_wire,
    uuid_to_wire,
)
from ssmchannel.messages.payloads import (
    AcknowledgeContent,
    ChannelClosed,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    OpenDataChannelInput,
    ProcessedClientAction,
    RequestedClientAction,
    decode_flag,
    encode_flag,
)
from ssmchannel.messages.versions import version_tuple

__all__ = [
    "CONTROL_FLAGS",
    "FLAG_FIN",
    "FLAG_SYN",
    "HEADER_LENGTH",
    "MESSAGE_SCHEMA_VERSION",
    "MESSAGE_TYPE_LENGTH",
    "PAYLOAD_OFFSET",
    "SCHEMA_VERSION",
    "AcknowledgeContent",
    "ActionStatus",
    "ActionType",
    "ChannelClosed",
    "ClientMessage",
    "Flag",
    "HandshakeComplete",
    "HandshakeRequest",
    "HandshakeResponse",
    "MessageType",
    "OpenDataChannelInput",
    "PayloadType",
    "ProcessedClientAction",
    "RequestedClientAction",
    "SessionType",
    "acknowledge_frame",
    "acknowledge_message",
    "decode_flag",
    "encode_flag",
    "encode_frame",
    "new_message_id",
    "now_ms",
    "peek_message_type",
    "uuid_from_wire",
    "uuid_to_wire",
    "version_tuple",
]
