"""Local port forwarding over Session Manager: one multiplexed session for many TCP connections.

Which mode a session runs in is decided in its handshake, by both ends:

- the client (session-manager-plugin's rule) multiplexes when the session type is ``Port``
  with ``type`` LocalPortForwarding and the agent's version is above 3.0.196.0;
- the agent multiplexes when the client version in the HandshakeResponse is 1.1.70 or newer.

So a DataChannel opened with ``multiplex=True`` answers with ``MUX_CLIENT_VERSION`` exactly
when ``multiplexing_applies`` holds (``channel.multiplexed``), and with the basic
``CLIENT_VERSION`` otherwise: an SSH session, a shell, or an agent too old for smux keep the
single raw stream they always had.

``PortForwarder`` serves accepted connections: the first opens a session; if it is
multiplexed, that connection and every later one is an smux stream on it (the agent dials the
destination once per stream, so a destination that closes only ends its stream); if not, each
connection gets a session of its own, as before. A multiplexed session that ends (the request
ended, the agent went away) ends its streams; the next connection opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ssmchannel.bridge import splice
from ssmchannel.channel import CLOSE_TIMEOUT, DataChannel
from ssmchannel.errors import ChannelClosedError
from ssmchannel.portmode import keepalive_interval
from ssmchannel.smux import MuxSession, MuxStream

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


async def splice_stream(
    stream: MuxStream,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    read_size: int = READ_SIZE,
    fin_timeout: float = CLOSE_TIMEOUT,
) -> None:
    """Copy bytes both ways between a local connection and a stream, then close both.

    The local side's EOF becomes the stream's FIN, and the copying goes on until the agent's
    FIN (the agent answers a FIN by closing the destination, which ends its side), but only
    while the agent keeps sending: after ``fin_timeout`` seconds without a byte from it (or
    at once, when writing to the local connection fails) both are closed, so an agent that
    never answers cannot keep the local socket and two tasks for the session's life. The
    agent's FIN (the destination closed) closes the local connection.
    """
    loop = asyncio.get_running_loop()
    heard = loop.time()  # when the agent last sent something, or we sent FIN
    writing = False  # a write to the local side waits for it to read: not the agent's silence

    async def local_to_stream() -> None:
        while data := await reader.read(read_size):
            await stream.write(data)
        await stream.close_write()

    async def stream_to_local() -> None:
        nonlocal heard, writing
        while data := await stream.read(read_size):
            writing = True
            writer.write(data)
            await writer.drain()
            writing = False
            heard = loop.time()

    upload = asyncio.ensure_future(local_to_stream())
    download = asyncio.ensure_future(stream_to_local())
    try:
        done, _ = await asyncio.wait({upload, download}, return_when=asyncio.FIRST_COMPLETED)
        if download not in done and upload.exception() is None:
            # The local side is done writing: wait for the agent's side, while it still sends.
            heard = loop.time()
            while not download.done():
                quiet = loop.time() - heard
                if not writing and quiet >= fin_timeout:
                    logger.debug("no FIN from the agent %g s after ours: closing %r", fin_timeout, stream)
                    break
                await asyncio.wait({download}, timeout=fin_timeout if writing else fin_timeout - quiet)
            if download.done():
                download.result()  # a failed write to the local side ends it here
    except (ChannelClosedError, ConnectionError):
        pass
    finally:
        for task in (upload, download):
            task.cancel()
        for task in (upload, download):
            with contextlib.suppress(asyncio.CancelledError, ChannelClosedError, ConnectionError):
                await task
        with contextlib.suppress(ChannelClosedError):
            await stream.close()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class PortForwarder:
    """Serves local connections over sessions opened by ``open_channel``.

    ``open_channel`` returns a connected DataChannel opened with ``multiplex=True`` (the caller
    starts the Session Manager session). Call ``handle`` for each accepted connection, and
    ``aclose`` at the end.
    """

    def __init__(self, open_channel: Callable[[], Awaitable[DataChannel]]) -> None:
        self.open_channel = open_channel
        self.channel: DataChannel | None = None  # the shared, multiplexed one
        self.mux: MuxSession | None = None
        self.sessions_opened = 0
        self.single_stream = False  # the agent answered with a basic session once
        self._opening = asyncio.Lock()
        self._dedicated: set[DataChannel] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Carry one accepted connection until either end closes it."""
        try:
            target = await self._target()
        except BaseException:
            writer.close()
            raise
        if isinstance(target, MuxStream):
            await splice_stream(target, reader, writer)
        else:
            await self._serve_dedicated(target, reader, writer)

    async def _target(self) -> MuxStream | DataChannel:
        """A new stream on the live multiplexed session (opening one if needed), or a session
        of its own when the agent serves one connection per session."""
        if self.single_stream:
            return await self._open()
        async with self._opening:
            for attempt in (1, 2):
                if self.mux is None or self.mux.closed_reason is not None:
                    await self._drop_mux()
                    channel = await self._open()
                    if not channel.multiplexed:
                        self.single_stream = True
                        return channel
                    self.channel = channel
                    self.mux = MuxSession(channel, keepalive_interval=keepalive_interval(channel.agent_version))
                    self.mux.start()
                try:
                    return await self.mux.open_stream()
                except ChannelClosedError:
                    # The session ended just now (the request ended, the agent went away): once more
                    # with a new one, whose start says why if it cannot.
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def _open(self) -> DataChannel:
        channel = await self.open_channel()
        self.sessions_opened += 1
        return channel

    async def _serve_dedicated(
        self, channel: DataChannel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._dedicated.add(channel)
        try:
            await splice(channel, reader, writer)
        finally:
            self._dedicated.discard(channel)
            await channel.close()

    async def _drop_mux(self) -> None:
        mux, channel = self.mux, self.channel
        self.mux, self.channel = None, None
        try:
            if mux is not None:
                await mux.close()
        finally:  # cancelled meanwhile too: the session is still ended
            if channel is not None:
                await channel.close(timeout=CLOSE_TIMEOUT)

    async def aclose(self) -> None:
        """End the shared session (TerminateSession flag) and any single-stream ones."""
        await self._drop_mux()
        for channel in list(self._dedicated):
            await channel.close()
