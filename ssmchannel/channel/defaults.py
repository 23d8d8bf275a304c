"""The data channel's defaults: the client version it reports, timeouts, buffer and message sizes."""

from __future__ import annotations

import logging
import os

from ssmchannel.messages import (
    PAYLOAD_OFFSET,
    SessionType,
)

logger = logging.getLogger(__name__)

# The newest plugin version without smux (1.1.70 added it): the agent then forwards ports
# over a single stream. See the docstring of ssmchannel.channel.
CLIENT_VERSION = "1.1.61.0"
PING_INTERVAL = 300.0  # the plugin pings every 5 minutes
HANDSHAKE_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0
# Agents before this version do not understand the TerminateSession flag.
TERMINATE_FLAG_AGENT_VERSION = (2, 3, 722, 0)
READ_BUFFER_LIMIT = 4 * 1024 * 1024
# Bytes of input per stream message. The plugin sends at most 1,024; the agent takes any
# size (it reads whole WebSocket messages without a limit, checks no size, and writes each
# payload to the destination at once): see "Compatibility" in ssmchannel/README.md. Larger
# messages carry bulk input with a 64th of the per-message work (digest, ack, frame, syscall).
INPUT_PAYLOAD_SIZE = 64 * 1024
# The largest WebSocket message the data channel needs, for ``max_size`` where a data-channel
# WebSocket is opened (websockets' default is 1 MiB, and each message that arrives ahead of the
# expected one is held: a hostile far end makes us keep more the larger it may make them).
# The largest message either end sends is Passport's input, INPUT_PAYLOAD_SIZE plus the
# 120-byte header; the agent's are far smaller (1,024-byte output payloads, acknowledges, the
# handshake's JSON, channel_closed with its output). Twice that, as a margin.
MAX_MESSAGE_SIZE = 2 * (INPUT_PAYLOAD_SIZE + PAYLOAD_OFFSET)
# No public source states a limit of AWS's service between client and agent: should one appear,
# this variable (e.g. 1024, the plugin's size) takes effect without a new release.
PAYLOAD_SIZE_ENV = "PASSPORT_SSM_PAYLOAD_SIZE"


def default_payload_size() -> int:
    """``INPUT_PAYLOAD_SIZE``, or ``$PASSPORT_SSM_PAYLOAD_SIZE`` when it is a whole number from 1 to that."""
    value = os.environ.get(PAYLOAD_SIZE_ENV, "").strip()
    if not value:
        return INPUT_PAYLOAD_SIZE
    if value.isdigit() and 1 <= int(value) <= INPUT_PAYLOAD_SIZE:
        return int(value)
    logger.warning(
        "%s=%r is not a size from 1 to %d; using %d",
        PAYLOAD_SIZE_ENV,
        value[:20],
        INPUT_PAYLOAD_SIZE,
        INPUT_PAYLOAD_SIZE,
    )
    return INPUT_PAYLOAD_SIZE


KNOWN_SESSION_TYPES = frozenset(SessionType)
