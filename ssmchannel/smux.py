"""smux (protocol version 1, as xtaci/smux speaks it), client side, over a byte channel.

The SSM Agent multiplexes a LocalPortForwarding session with smux when the client says it can
(see ``ssmchannel.forwarding``): every TCP connection is a stream, the agent dials the
destination once per stream. Frames, all integers little-endian::

    version u8 (= 1) | command u8 | length u16 | stream id u32 | length bytes of data

Commands: SYN 0 (open a stream), FIN 1 (no more data from this side), PSH 2 (data), NOP 3
(keepalive, stream id 0). Version 2's UPD (4, per-stream windows) is not part of version 1: a
version-1 peer ends the session on it, and so does this one. SYN, FIN and NOP carry no data.

Stream ids: the client's first stream is 3, then 5, 7... (smux starts the client's counter at
1 and adds 2 before each open). Data for a stream that is unknown or already closed is
dropped, as smux does.

Flow control is smux version 1's: no per-stream window; the session stops reading from the
channel while its streams hold ``max_receive_buffer`` unread bytes, so one slow reader holds
back every stream (as in smux), and the data channel's own limit then stops the agent.

Keepalive: ``keepalive_interval`` sends a NOP that often (agents up to 3.1.1511.0 close a
session that sends nothing for 30 s; newer ones disable smux keepalive for modern clients).
This side never times a silent peer out: the data channel underneath has its own end.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import struct
from dataclasses import dataclass
from typing import Any, Protocol

from ssmchannel.errors import ChannelClosedError, ChannelError
from ssmchannel.waiting import cancel_and_wait

logger = logging.getLogger(__name__)

SMUX_VERSION = 1
HEADER = struct.Struct("<BBHI")
MAX_FRAME_DATA = 32768  # smux's default MaxFrameSize
MAX_RECEIVE_BUFFER = 4 * 1024 * 1024  # smux's default MaxReceiveBuffer
MAX_STREAM_ID = 0xFFFFFFFF
READ_SIZE = 64 * 1024


class Command(enum.IntEnum):
    SYN = 0
    FIN = 1
    PSH = 2
    NOP = 3


class SmuxProtocolError(ChannelError):
    """A frame version 1 does not allow (another version, an unknown command, data on a control frame)."""


class StreamClosedError(ChannelClosedError):
    """Writing to a stream this side closed, or whose session ended."""


@dataclass(frozen=True)
class Frame:
    command: Command
    stream_id: int
    data: bytes = b""


def encode_frame(command: Command, stream_id: int, data: bytes = b"") -> bytes:
    if not 0 <= stream_id <= MAX_STREAM_ID:
        raise ValueError(f"stream id out of range: {stream_id}")
    if len(data) > 0xFFFF:
        raise ValueError(f"frame data too long: {len(data)} bytes")
    if data and command != Command.PSH:
        raise ValueError(f"{command.name} carries no data")
    return HEADER.pack(SMUX_VERSION, command, len(data), stream_id) + data


class FrameDecoder:
    """Bytes in, whole frames out; a frame may span any number of ``feed`` calls.

    A frame version 1 does not allow stops decoding: ``feed`` returns the frames before it and
    sets ``error`` (the session then ends); feeding more raises that error.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.error: SmuxProtocolError | None = None

    def feed(self, data: bytes) -> list[Frame]:
        if self.error is not None:
            raise self.error
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            version, command, length, stream_id = HEADER.unpack_from(self._buffer)
            if version != SMUX_VERSION:
                self.error = SmuxProtocolError(f"smux version {version}, expected {SMUX_VERSION}")
            elif command not in Command._value2member_map_:
                self.error = SmuxProtocolError(f"unknown smux command {command}")
            elif length and command != Command.PSH:
                self.error = SmuxProtocolError(f"{Command(command).name} frame with {length} bytes of data")
            if self.error is not None:
                break
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append(Frame(Command(command), stream_id, bytes(self._buffer[HEADER.size : end])))
            del self._buffer[:end]
        return frames


class ByteChannel(Protocol):
    """What the session runs over: a DataChannel (or a test's stand-in)."""

    async def read(self, n: int = -1) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


class MuxStream:
    """One multiplexed connection: ``read`` (b"" after the peer's FIN), ``write``, ``close_write``, ``close``."""

    def __init__(self, session: MuxSession, stream_id: int) -> None:
        self.session = session
        self.id = stream_id
        self._buffer = bytearray()
        self._readable = asyncio.Event()
        self.remote_closed = False  # the peer sent FIN
        self.local_closed = False  # we sent FIN
        self.closed_reason: str | None = None  # set when the stream is gone for both directions

    def __repr__(self) -> str:
        return f"<MuxStream {self.id}>"

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered if n < 0) as soon as any arrive; b"" once the peer is done."""
        while not self._buffer and not self.remote_closed and self.closed_reason is None:
            self._readable.clear()
            await self._readable.wait()
        if n < 0 or n >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
        self.session._consumed(len(data))
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data`` in PSH frames of at most the session's frame size."""
        if self.local_closed or self.closed_reason is not None:
            raise StreamClosedError(self.closed_reason or f"stream {self.id} is closed for writing")
        size = self.session.max_frame_data
        view = memoryview(data)
        for start in range(0, len(view), size):
            await self.session._send(Command.PSH, self.id, bytes(view[start : start + size]))

    async def close_write(self) -> None:
        """Send FIN once: the peer reads EOF (the agent then closes its destination connection)."""
        if self.local_closed or self.closed_reason is not None:
            return
        self.local_closed = True
        with contextlib.suppress(ChannelClosedError):
            await self.session._send(Command.FIN, self.id)
        if self.remote_closed:
            self._finish("closed")

    async def close(self) -> None:
        """FIN if not sent yet, then forget the stream: what the peer still sends is dropped."""
        await self.close_write()
        self._finish("closed")

    def _on_data(self, data: bytes) -> bool:
        if self.remote_closed or self.closed_reason is not None:
            return False
        self._buffer += data
        self._readable.set()
        return True

    def _on_fin(self) -> None:
        self.remote_closed = True
        self._readable.set()
        if self.local_closed:
            self._finish("closed")

    def _finish(self, reason: str, *, keep_unread: bool = False) -> None:
        """Gone for both directions; unread bytes are dropped unless the session ended under them."""
        if self.closed_reason is None:
            self.closed_reason = reason
            if not keep_unread:
                self.session._consumed(len(self._buffer))
                self._buffer.clear()
            self.session._forget(self.id)
        self._readable.set()


class MuxSession:
    """The client end of an smux session over ``channel``; ``open_stream`` for each connection.

    ``start()`` begins reading; ``close()`` ends every stream (it leaves the channel to its
    owner). ``closed_reason`` is None while the session runs.
    """

    def __init__(
        self,
        channel: ByteChannel,
        *,
        keepalive_interval: float | None = None,
        max_frame_data: int = MAX_FRAME_DATA,
        max_receive_buffer: int = MAX_RECEIVE_BUFFER,
    ) -> None:
        if not 0 < max_frame_data <= 0xFFFF:
            raise ValueError("max_frame_data must be 1..65535")
        self.channel = channel
        self.keepalive_interval = keepalive_interval
        self.max_frame_data = max_frame_data
        self.max_receive_buffer = max_receive_buffer
        self.closed_reason: str | None = None
        self._streams: dict[int, MuxStream] = {}
        self._next_id = 1
        self._write_lock = asyncio.Lock()
        self._buffered = 0
        self._room = asyncio.Event()
        self._room.set()
        self._closed = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def streams(self) -> dict[int, MuxStream]:
        """The open streams by id (a copy)."""
        return dict(self._streams)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._read_loop(), name="smux-read"))
        if self.keepalive_interval:
            self._tasks.append(asyncio.create_task(self._keepalive(self.keepalive_interval), name="smux-keepalive"))

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def open_stream(self) -> MuxStream:
        if self.closed_reason is not None:
            raise ChannelClosedError(self.closed_reason)
        if self._next_id + 2 > MAX_STREAM_ID:
            raise ChannelClosedError("smux stream ids are used up: open a new session")
        self._next_id += 2
        stream = MuxStream(self, self._next_id)
        # Known before the SYN leaves, so an answer that comes at once is not dropped.
        self._streams[stream.id] = stream
        try:
            await self._send(Command.SYN, stream.id)
        except BaseException:
            self._streams.pop(stream.id, None)
            raise
        return stream

    async def close(self, reason: str = "the session was closed") -> None:
        self._end(reason)
        current = asyncio.current_task()
        await cancel_and_wait(*(task for task in self._tasks if task is not current))

    # --- inside ---------------------------------------------------------------------

    async def _send(self, command: Command, stream_id: int, data: bytes = b"") -> None:
        if self.closed_reason is not None:
            raise StreamClosedError(self.closed_reason)
        frame = encode_frame(command, stream_id, data)
        # One frame's bytes must not interleave with another's: the channel writes in chunks.
        async with self._write_lock:
            try:
                await self.channel.write(frame)
            except ChannelClosedError as exc:
                self._end(exc.reason)
                raise StreamClosedError(exc.reason) from exc

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        reason = "the data channel ended"
        try:
            while True:
                await self._room.wait()
                data = await self.channel.read(READ_SIZE)
                if not data:
                    reason = getattr(self.channel, "closed_reason", None) or reason
                    break
                for frame in decoder.feed(data):
                    self._dispatch(frame)
                if decoder.error is not None:
                    raise decoder.error
        except SmuxProtocolError as exc:
            logger.warning("ending the smux session: %s", exc)
            reason = f"smux protocol error: {exc}"
        except ChannelClosedError as exc:
            reason = exc.reason
        self._end(reason)

    def _dispatch(self, frame: Frame) -> None:
        stream = self._streams.get(frame.stream_id)
        if frame.command == Command.PSH:
            if stream is not None and frame.data and stream._on_data(frame.data):
                self._buffered += len(frame.data)
                if self._buffered >= self.max_receive_buffer:
                    self._room.clear()
        elif frame.command == Command.FIN:
            if stream is not None:
                stream._on_fin()
        elif frame.command == Command.SYN:
            # The agent never opens streams towards the client; nothing here would accept one.
            logger.debug("ignoring SYN for stream %d from the peer", frame.stream_id)

    async def _keepalive(self, interval: float) -> None:
        while self.closed_reason is None:
            await asyncio.sleep(interval)
            with contextlib.suppress(ChannelClosedError):
                await self._send(Command.NOP, 0)

    def _consumed(self, n: int) -> None:
        self._buffered = max(0, self._buffered - n)
        if self._buffered < self.max_receive_buffer:
            self._room.set()

    def _forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def _end(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        for stream in list(self._streams.values()):
            stream._finish(reason, keep_unread=True)
        self._room.set()
        self._closed.set()
