"""What the channel needs from a WebSocket, so tests and devcloud can put something else below it.

``WebSocketTransport`` wraps a websockets connection (client or server side alike).
``memory_pair`` gives two connected in-memory ends, for tests that want no sockets.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, InvalidState, ProtocolError
from websockets.protocol import State

from ssmchannel.errors import TransportClosed
from ssmchannel.wsframes import FrameTap, tap

Frame = bytes | str


class Transport(Protocol):
    """A message-oriented, ordered, possibly lossy pipe (a WebSocket)."""

    async def send(self, frame: Frame) -> None:
        """Send one message; bytes go as a binary frame, str as text. Raises TransportClosed."""
        ...

    async def recv(self) -> Frame:
        """The next message. Raises TransportClosed when the pipe is gone."""
        ...

    async def ping(self) -> None:
        """A keepalive (a WebSocket ping); no-op where there is none."""
        ...

    async def close(self, reason: str = "") -> None:
        """Close the pipe; safe to call twice."""
        ...


def _describe(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "connection closed without a close frame"
    return f"connection closed ({frame.code}{': ' + frame.reason if frame.reason else ''})"


# Queued frames are written at once when this much is waiting, else when the loop turns.
FLUSH_BYTES = 64 * 1024


class WebSocketTransport:
    """A websockets connection seen as a Transport.

    Besides ``send`` it offers ``send_nowait`` and ``drain``, which ``ReliableLink`` uses for
    its stream messages and acks: frames queued in one turn of the event loop leave in one
    write (one system call) instead of one each, and without ``send``'s per-message context.

    ``enable_fast_path()`` (once the opening frame is through) puts a ``FrameTap`` under the
    connection: binary frames are then parsed and built here (``ssmchannel.wsframes``), and
    ``recv_batch`` returns every frame of one read at once. Control frames, text frames and
    closing stay websockets'; frames queued here are written before anything websockets sends.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._queued_bytes = 0
        self._flush_scheduled = False
        self._tap: FrameTap | None = None
        self._out: list[bytes] = []  # frames built by the tap (or their pieces), not yet written

    def enable_fast_path(self) -> bool:
        """Parse and build binary frames here from now on; False where websockets must stay (see FrameTap.install)."""
        if self._tap is None:
            self._tap = tap(self.connection)
        return self._tap is not None

    def send_nowait(self, frame: bytes) -> None:
        """Queue one binary frame; it is written with the others queued in this turn of the loop."""
        connection = self.connection
        if connection.protocol.state is not State.OPEN:
            raise TransportClosed(self._closed_reason())
        if self._tap is not None:
            self._out.append(self._tap.encode_binary(frame))
        else:
            try:
                connection.protocol.send_binary(frame)
            except (InvalidState, ProtocolError) as exc:
                raise TransportClosed(self._closed_reason()) from exc
        self._queued_bytes += len(frame)
        if self._queued_bytes >= FLUSH_BYTES:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def send_batch_nowait(self, frames: list[bytes]) -> None:
        """``send_nowait`` for several frames, in order (a batch of acks)."""
        if self._tap is None or self.connection.protocol.state is not State.OPEN:
            for frame in frames:
                self.send_nowait(frame)
            return
        self._out.extend(self._tap.encode_many(frames))
        self._queued_bytes += sum(map(len, frames))
        if self._queued_bytes >= FLUSH_BYTES:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._queued_bytes = 0
        connection = self.connection
        if self._out:
            out, self._out = self._out, []
            if connection.transport.is_closing() or connection.protocol.state is not State.OPEN:
                return
            connection.transport.write(b"".join(out))
        writes = connection.protocol.data_to_send()
        if not writes:
            return
        if all(writes):
            if connection.transport.is_closing():
                return
            connection.transport.write(b"".join(writes))
            return
        # An end of stream is among them (the connection is closing): websockets' own path.
        connection.protocol.writes[:0] = writes
        connection.send_data()

    def backed_up(self, limit: int = FLUSH_BYTES) -> bool:
        """Is more than ``limit`` bytes waiting in our own write buffer (the peer is not reading)?"""
        transport = self.connection.transport
        return transport is not None and transport.get_write_buffer_size() > limit

    async def drain(self) -> None:
        """Wait while the socket's write buffer is above its high-water mark."""
        try:
            await self.connection.drain()
        except ConnectionError as exc:
            raise TransportClosed(str(exc) or "connection lost") from exc

    def _closed_reason(self) -> str:
        """As ``send`` would say it: the close frame received (or sent), when there is one."""
        protocol = self.connection.protocol
        frame = protocol.close_rcvd or protocol.close_sent
        if frame is not None:
            return f"connection closed ({frame.code}{': ' + frame.reason if frame.reason else ''})"
        return "connection closed without a close frame" if protocol.state is State.CLOSED else "connection not open"

    async def send(self, frame: Frame) -> None:
        self._flush()  # what send_nowait queued goes first
        try:
            await self.connection.send(frame)
        except ConnectionClosed as exc:
            raise TransportClosed(_describe(exc)) from exc

    async def recv(self) -> Frame:
        frame_tap = self._tap
        if frame_tap is not None:
            await frame_tap.wait()
            if frame_tap.frames:
                return frame_tap.take_one()
        try:
            return await self.connection.recv()
        except ConnectionClosed as exc:
            raise TransportClosed(_describe(exc)) from exc

    async def recv_batch(self) -> list[Frame]:
        """Every frame received so far (at least one), oldest first."""
        frame_tap = self._tap
        if frame_tap is not None:
            await frame_tap.wait()
            if frame_tap.frames:
                return frame_tap.take()  # type: ignore[return-value]
        return [await self.recv()]

    async def ping(self) -> None:
        self._flush()
        try:
            # Not awaiting the pong: like the plugin, the ping only keeps idle proxies open.
            await self.connection.ping()
        except ConnectionClosed as exc:
            raise TransportClosed(_describe(exc)) from exc

    async def close(self, reason: str = "") -> None:
        self._flush()
        await self.connection.close(reason=reason[:120])

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason, if it closed the WebSocket."""
        return self.connection.close_reason


_CLOSED = object()


class MemoryTransport:
    """One end of an in-memory pipe: what one end sends, the other receives, in order."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self.peer: MemoryTransport | None = None
        self.closed = False
        self.close_reason = ""
        self.pings = 0

    async def send(self, frame: Frame) -> None:
        if self.closed or self.peer is None or self.peer.closed:
            raise TransportClosed(self.close_reason or "connection closed")
        self.peer._inbox.put_nowait(frame)

    async def recv(self) -> Frame:
        if self.closed:
            raise TransportClosed(self.close_reason or "connection closed")
        item = await self._inbox.get()
        if item is _CLOSED:
            self.closed = True
            self._inbox.put_nowait(_CLOSED)  # later recv() calls fail too
            raise TransportClosed(self.close_reason or "connection closed")
        assert isinstance(item, bytes | str)
        return item

    async def ping(self) -> None:
        if self.closed:
            raise TransportClosed(self.close_reason or "connection closed")
        self.pings += 1

    async def close(self, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self._inbox.put_nowait(_CLOSED)
        if self.peer is not None and not self.peer.closed:
            self.peer.close_reason = reason
            self.peer._inbox.put_nowait(_CLOSED)


def memory_pair() -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-memory transports (create them inside the running event loop)."""
    left, right = MemoryTransport(), MemoryTransport()
    left.peer, right.peer = right, left
    return left, right
