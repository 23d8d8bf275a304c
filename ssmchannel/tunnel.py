"""asyncssh straight over a DataChannel: an asyncio transport whose other end is the channel.

``channel_socket`` (ssmchannel.bridge) runs anything that wants a socket over the channel
through a socketpair and a copying task for each direction. For asyncssh, the portal's one
SSH client, that is a pair of file descriptors, two socket transports, a pair of asyncio
streams and three tasks per open terminal, and every byte copied through the kernel twice.
``ChannelTunnel`` is what ``asyncssh.connect(tunnel=...)`` asks for instead: the connection's
protocol gets a ``ChannelTransport``, which hands what the protocol writes to the channel and
what the channel reads to the protocol, with one task that reads and one that runs only while
written bytes wait for the channel's window.

The transport keeps only the part of asyncio's contract an SSH connection uses (asyncssh
writes, aborts when it closes, and never pauses reading; its channel windows bound what is in
flight): ``write``, ``close`` (what was written goes first), ``abort`` (it does not), and
``connection_lost`` exactly once, after the channel's end or either of those. The channel
itself stays open: whoever opened it closes it, as with ``channel_socket``.

    channel = await DataChannel.connect(url, token)
    connection = await asyncssh.connect("instance", tunnel=ChannelTunnel(channel), ...)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ssmchannel.channel import DataChannel
from ssmchannel.errors import ChannelClosedError

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# What get_extra_info("peername") and ("sockname") answer: there is no socket, and no address.
CHANNEL_ADDRESS = ("ssm-data-channel", 0)


class ChannelTransport(asyncio.Transport):
    """One protocol's byte stream over ``channel``; see the module doc for the contract kept."""

    def __init__(self, channel: DataChannel, protocol: asyncio.Protocol) -> None:
        super().__init__(extra={"peername": CHANNEL_ADDRESS, "sockname": CHANNEL_ADDRESS})
        self._channel = channel
        self._protocol = protocol
        self._outgoing = bytearray()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._lost = False

    def start(self) -> None:
        """Tell the protocol it is connected, then start reading (as asyncio's transports do)."""
        self._protocol.connection_made(self)
        if not self._lost:
            self._reader = asyncio.ensure_future(self._read())

    # --- asyncio.BaseTransport ----------------------------------------------------------
    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Stop reading; what was written still goes to the channel, then the protocol is told."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._stop_reading()
        if self._writer is None:
            self._lose(None)

    def abort(self) -> None:
        """Stop at once: what was written and not yet taken by the channel is dropped."""
        self._closing = True
        self._outgoing.clear()
        if self._writer is not None:
            self._writer.cancel()
        self._stop_reading()
        self._lose(None)

    # --- asyncio.WriteTransport ---------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost:
            return  # as a socket transport after close: nothing more goes out
        if not data:
            return
        self._outgoing += data
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._flush())

    def get_write_buffer_size(self) -> int:
        return len(self._outgoing)

    def can_write_eof(self) -> bool:
        return False

    # --- the two directions -------------------------------------------------------------
    async def _flush(self) -> None:
        problem: Exception | None = None
        try:
            while self._outgoing:
                data = bytes(self._outgoing)
                self._outgoing.clear()
                await self._channel.write(data)
        except (ChannelClosedError, ConnectionError) as exc:
            problem = exc
        finally:
            self._writer = None
        if problem is not None:
            self._stop_reading()
            self._lose(problem)
        elif self._closing:
            self._lose(None)

    async def _read(self) -> None:
        problem: Exception | None = None
        try:
            while data := await self._channel.read(READ_SIZE):
                self._protocol.data_received(data)
                if self._closing or self._lost:
                    return
        except (ChannelClosedError, ConnectionError) as exc:
            problem = exc
        except Exception as exc:  # the protocol's own failure ends the connection, as in asyncio
            logger.exception("data channel transport: the protocol failed on received data")
            problem = exc
        self._reader = None
        if problem is None and not self._closing and not self._lost:
            # The channel ended: EOF, and the protocol keeps the transport open only if it says so.
            keep_open = self._protocol.eof_received()
            if keep_open:
                return
        if not self._lost:
            self._closing = True
            self._lose(problem)

    def _stop_reading(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():  # not from inside data_received
            reader.cancel()

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        # Soon, not now: asyncio calls connection_lost from the loop, never from inside write/close.
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, exc)


class ChannelTunnel:
    """``asyncssh.connect(tunnel=ChannelTunnel(channel))``: the SSH connection over ``channel``.

    One connection per tunnel; closing the tunnel leaves the channel to its owner."""

    def __init__(self, channel: DataChannel) -> None:
        self._channel = channel
        self.transport: ChannelTransport | None = None

    async def create_connection(
        self, session_factory: Callable[[], asyncio.Protocol], remote_host: str, remote_port: int
    ) -> tuple[ChannelTransport, asyncio.Protocol]:
        if self.transport is not None:
            raise RuntimeError("a ChannelTunnel carries one connection")
        protocol = session_factory()
        self.transport = ChannelTransport(self._channel, protocol)
        self.transport.start()
        return self.transport, protocol

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        return None
