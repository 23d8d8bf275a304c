"""The Session Manager data channel, client side: asyncio + websockets, no Django.

The portal's browser terminal and the ``passport`` CLI both reach instances through it.
``DataChannel.open(stream_url, token)`` gives a reliable byte stream to the agent;
``channel_socket`` / ``channel_streams`` / ``splice`` plug it into code that wants a socket,
asyncio streams or a forwarded local port; ``ssmchannel.tunnel.ChannelTunnel`` runs asyncssh
straight over it.
"""

from ssmchannel.bridge import channel_socket, channel_streams, splice
from ssmchannel.channel import CLIENT_VERSION, DataChannel
from ssmchannel.errors import ChannelClosedError, ChannelError, HandshakeError, MessageError, TransportClosed
from ssmchannel.link_terms import LinkConfig
from ssmchannel.messages import ClientMessage, Flag, MessageType, PayloadType

__all__ = [
    "CLIENT_VERSION",
    "ChannelClosedError",
    "ChannelError",
    "ClientMessage",
    "DataChannel",
    "Flag",
    "HandshakeError",
    "LinkConfig",
    "MessageError",
    "MessageType",
    "PayloadType",
    "TransportClosed",
    "channel_socket",
    "channel_streams",
    "splice",
]
