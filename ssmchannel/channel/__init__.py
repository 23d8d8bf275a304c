"""The client end of a Session Manager data channel, as an asyncio byte stream.

    async with DataChannel.open(stream_url, token) as channel:
        await channel.write(b"SSH-2.0-...")
        data = await channel.read()        # b"" once the channel has closed
        channel.closed_reason              # why it closed (None while open)

``open`` connects the WebSocket, sends the token in the opening TEXT frame, answers the
agent's handshake and returns once the agent says the handshake is complete: data written
before that would be discarded by the agent. Sessions of the documents Passport uses
(AWS-StartSSHSession, AWS-StartPortForwardingSession) are raw byte streams once open.

By default the client reports version ``CLIENT_VERSION`` (below the plugin's 1.1.70, where
smux multiplexing starts), so the agent keeps one TCP connection per session and carries its
bytes as they are. With ``multiplex=True``, a LocalPortForwarding session with an agent that
can multiplex (``ssmchannel.portmode``) is answered with ``MUX_CLIENT_VERSION`` instead and
``channel.multiplexed`` is True: its bytes are then smux frames (``ssmchannel.smux``), one
stream per forwarded connection (``ssmchannel.forwarding``).

Not supported: KMS-encrypted sessions (the handshake answers KMSEncryption with a failure,
and the agent then ends the session), and reconnecting a dropped WebSocket with
ResumeSession (a dropped WebSocket ends the channel; start a new session).
"""

from ssmchannel.channel.core import DataChannel
from ssmchannel.channel.defaults import (
    CLIENT_VERSION,
    CLOSE_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    INPUT_PAYLOAD_SIZE,
    KNOWN_SESSION_TYPES,
    MAX_MESSAGE_SIZE,
    PAYLOAD_SIZE_ENV,
    PING_INTERVAL,
    READ_BUFFER_LIMIT,
    TERMINATE_FLAG_AGENT_VERSION,
    default_payload_size,
)
from ssmchannel.channel.incoming import IncomingHandler

__all__ = [
    "CLIENT_VERSION",
    "CLOSE_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "INPUT_PAYLOAD_SIZE",
    "KNOWN_SESSION_TYPES",
    "MAX_MESSAGE_SIZE",
    "PAYLOAD_SIZE_ENV",
    "PING_INTERVAL",
    "READ_BUFFER_LIMIT",
    "TERMINATE_FLAG_AGENT_VERSION",
    "DataChannel",
    "IncomingHandler",
    "default_payload_size",
]
