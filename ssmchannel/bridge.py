"""Plugging a DataChannel into code that wants a socket or asyncio streams.

The simplest robust way to run anything that speaks to a socket over the channel is a
socketpair: one end goes to that code (``asyncssh.connect(sock=...)``), and ``splice`` copies
bytes between the other end and the channel. A general asyncio.Transport would save a copy,
but it would have to get pause/resume, half-close and abort exactly right for every consumer;
the kernel's socketpair already does. asyncssh needs far less of a transport, and the portal
runs one SSH connection per open terminal: ``ssmchannel.tunnel`` gives it one of its own.

    async with DataChannel.open(url, token) as channel:
        async with channel_socket(channel) as sock:
            async with asyncssh.connect("instance", sock=sock, ...) as ssh:
                ...

``channel_streams`` gives an asyncio (reader, writer) pair the same way. For local port
forwarding, accept a TCP connection with ``asyncio.start_server`` and
``splice(channel, reader, writer)`` it: one connection per session; ``ssmchannel.forwarding``
carries many connections over one multiplexed session.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from ssmchannel.channel import CLOSE_TIMEOUT, DataChannel
from ssmchannel.errors import ChannelClosedError
from ssmchannel.waiting import cancel_and_wait, raise_failure

READ_SIZE = 64 * 1024


async def splice(
    channel: DataChannel,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    read_size: int = READ_SIZE,
) -> None:
    """Copy bytes both ways until one side ends, then close ``writer``.

    When the channel ends first, the local side sees EOF. When the local side ends first,
    what it wrote is delivered (up to CLOSE_TIMEOUT) and the channel is left open: whether
    that ends the session (SSH) or not (a forwarded port) is the caller's decision.
    """

    async def local_to_channel() -> None:
        while data := await reader.read(read_size):
            await channel.write(data)
        await channel.drain(CLOSE_TIMEOUT)

    async def channel_to_local() -> None:
        while data := await channel.read(read_size):
            writer.write(data)
            await writer.drain()

    directions: set[asyncio.Future[None]] = {
        asyncio.ensure_future(local_to_channel()),
        asyncio.ensure_future(channel_to_local()),
    }
    done: set[asyncio.Future[None]] = set()
    try:
        done, _ = await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
    finally:
        try:
            await cancel_and_wait(*directions)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    # A closed channel or a reset local socket is an ordinary way for a splice to end; the
    # direction that ended first speaks first.
    raise_failure(*done, *(directions - done), ordinary=(ChannelClosedError, ConnectionError))


@contextlib.asynccontextmanager
async def channel_socket(channel: DataChannel) -> AsyncIterator[socket.socket]:
    """A connected stream socket whose peer is ``channel`` (give it to ``asyncssh.connect(sock=...)``).

    The socket belongs to whoever it is handed to (asyncssh closes it); leaving the block
    stops the copying and closes our end.
    """
    ours, theirs = socket.socketpair()
    try:
        reader, writer = await asyncio.open_connection(sock=ours)
    except BaseException:
        ours.close()
        theirs.close()
        raise
    pump = asyncio.create_task(splice(channel, reader, writer), name="ssmchannel-splice")
    try:
        yield theirs
    finally:
        try:
            await cancel_and_wait(pump)
        finally:
            theirs.close()
    raise_failure(pump)


@contextlib.asynccontextmanager
async def channel_streams(channel: DataChannel) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """An asyncio (reader, writer) pair connected to ``channel``, for stream-based code.

    Closing the writer ends the local side (see ``splice``); the channel stays open.
    """
    async with channel_socket(channel) as sock:
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            yield reader, writer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
