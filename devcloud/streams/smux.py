"""The agent's smux server for multiplexed port forwarding (xtaci/smux protocol version 1).

Keepalive follows the agent: its smux sends NOPs and closes a silent session unless
``smux_keepalive`` says the agent turned that off for this client.

A LocalPortForwarding session with a modern client carries smux frames in its OUTPUT
payloads, both ways. Each frame is an 8-byte header (version 1, command, data length u16
little-endian, stream id u32 little-endian) then the data; frames may span messages, and a
message may hold several frames. The client opens streams (SYN); for each, the agent dials
the destination once, relays PSH data both ways, and closes with FIN in either direction.
NOP (the client's keepalive) is ignored. This module is devcloud's own implementation and
shares no code with the client's (``ssmchannel``): each is tested from hand-written bytes.

Flow control is smux v1's, session-wide: data the streams hold that their destinations have not
taken counts against ``MAX_RECEIVE_BUFFER`` (4 MiB); while none of it is left, no further frame
is read (``feed`` waits), and a byte taken, or a stream gone, gives its share back. The agent's
write to its smux connection then blocks, so its data channel stops acknowledging the client's
input and the client's writes wait for window space.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

VERSION = 1
SYN, FIN, PSH, NOP, UPD = 0, 1, 2, 3, 4
UPD_SIZE = 8  # UPD's window update (consumed u32, window u32) follows its header
HEADER = struct.Struct("<BBHI")  # version, command, length, stream id
MAX_FRAME_DATA = 32768  # smux's default MaxFrameSize: what the agent writes per PSH frame
MAX_RECEIVE_BUFFER = 4 * 1024 * 1024  # smux's default MaxReceiveBuffer: unread data, all streams together

KEEPALIVE = (10.0, 30.0)  # smux's KeepAliveInterval and KeepAliveTimeout
# Agents from 3.1.1446.0 turned smux keepalive off; from 3.1.1575.0 only for clients above 1.2.331.0.
KEEPALIVE_OFF_FROM_AGENT = (3, 1, 1446, 0)
KEEPALIVE_BY_CLIENT_FROM_AGENT = (3, 1, 1575, 0)
KEEPALIVE_OFF_AFTER_CLIENT = (1, 2, 331, 0)

Dial = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class SmuxProtocolError(Exception):
    """The peer broke the framing (wrong version, unknown command)."""


@dataclass(frozen=True)
class Frame:
    command: int
    stream_id: int
    data: bytes = b""

    def encode(self) -> bytes:
        if len(self.data) > 0xFFFF:
            raise ValueError("smux frame data is at most 65535 bytes")
        return HEADER.pack(VERSION, self.command, len(self.data), self.stream_id) + self.data


class FrameReader:
    """Reassembles frames from arbitrary slices of the byte stream.

    It reads as the agent's smux (v1.5.15) does: only PSH carries ``length`` bytes of data;
    the length of SYN, FIN and NOP is not read, so their header is the whole frame; UPD is
    followed by its 8-byte window update; any other command or version breaks the session.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= HEADER.size:
            version, command, length, stream_id = HEADER.unpack_from(self._buffer)
            if version != VERSION:
                raise SmuxProtocolError(f"smux version {version} is not supported")
            if command == PSH:
                size = length
            elif command == UPD:
                size = UPD_SIZE
            elif command in (SYN, FIN, NOP):
                size = 0
            else:
                raise SmuxProtocolError(f"unknown smux command {command}")
            if len(self._buffer) < HEADER.size + size:
                break
            frames.append(Frame(command, stream_id, bytes(self._buffer[HEADER.size : HEADER.size + size])))
            del self._buffer[: HEADER.size + size]
        return frames


@dataclass
class _Stream:
    stream_id: int
    incoming: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    unread: int = 0  # bytes in ``incoming``, counted against the session's receive buffer
    writer: asyncio.StreamWriter | None = None
    fin_sent: bool = False


class SmuxServer:
    """The agent's side of one smux session: streams to the destination, one TCP connection each.

    ``send(data)`` puts bytes on the data channel (whole frames, in order); ``dial()`` connects to
    the destination; ``dial_failed(error)`` is told when it cannot (the agent then sends the
    ConnectToPortError flag). ``feed`` raises SmuxProtocolError on broken framing.
    """

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        dial: Dial,
        dial_failed: Callable[[OSError], Awaitable[None]],
        *,
        read_size: int = MAX_FRAME_DATA,
        keepalive: tuple[float, float] | None = None,
        on_dead: Callable[[], None] | None = None,
        receive_buffer: int = MAX_RECEIVE_BUFFER,
    ) -> None:
        self._send = send
        self._dial = dial
        self._dial_failed = dial_failed
        self._read_size = min(read_size, MAX_FRAME_DATA)
        self._reader = FrameReader()
        self._streams: dict[int, _Stream] = {}
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.streams_opened = 0
        self._heard = False  # a frame arrived since the keepalive's last look
        # smux's token bucket: what is left of the receive buffer (<= 0: read no more frames).
        self._tokens = receive_buffer
        self._tokens_back = asyncio.Event()
        if keepalive is not None:
            # smux's keepalive: a NOP every ``interval``; no frame at all within ``timeout``
            # closes the session (``on_dead``).
            interval, timeout = keepalive
            self._spawn(self._ping(interval))
            self._spawn(self._watch(timeout, on_dead or (lambda: None)))

    @property
    def unread(self) -> int:
        """Bytes the streams hold that their destinations have not taken yet."""
        return sum(stream.unread for stream in self._streams.values())

    async def feed(self, data: bytes) -> None:
        """Take bytes from the data channel; waits while the receive buffer has no room left.

        As smux's recvLoop: room is looked at before each frame (so one frame may take it below
        zero), and a frame waits, whatever its command, until a destination takes data or a
        stream holding some ends.
        """
        for frame in self._reader.feed(data):
            while self._tokens <= 0:
                self._tokens_back.clear()
                await self._tokens_back.wait()
            self._heard = True
            self._handle(frame)

    def _return_tokens(self, stream: _Stream, count: int) -> None:
        stream.unread -= count
        self._tokens += count
        if self._tokens > 0:
            self._tokens_back.set()

    async def _ping(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._write_frame(Frame(NOP, 0))

    async def _watch(self, timeout: float, on_dead: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(timeout)
            # Not while frames wait for room: the silence is ours, not the client's (smux's keepalive).
            if not self._heard and self._tokens > 0:
                on_dead()
                return
            self._heard = False

    def _handle(self, frame: Frame) -> None:
        stream = self._streams.get(frame.stream_id)
        if frame.command == SYN:
            if stream is None:  # a repeated SYN for a live stream is ignored, as smux does
                stream = _Stream(frame.stream_id)
                self._streams[frame.stream_id] = stream
                self.streams_opened += 1
                self._spawn(self._serve_stream(stream))
        elif frame.command == PSH:
            if stream is not None and frame.data:
                stream.incoming.put_nowait(frame.data)
                stream.unread += len(frame.data)
                self._tokens -= len(frame.data)
            # Data for a stream that is unknown or gone is dropped.
        elif frame.command == FIN and stream is not None:
            stream.incoming.put_nowait(None)
        # NOP (keepalive) and UPD (flow control, unused in v1): nothing to do.

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Typically the data channel closing under a stream: the session is ending anyway.
            logger.debug("smux stream task ended: %r", error)

    async def _write_frame(self, frame: Frame) -> None:
        async with self._send_lock:  # frames of different streams must not interleave
            await self._send(frame.encode())

    async def _finish(self, stream: _Stream) -> None:
        if not stream.fin_sent:
            stream.fin_sent = True
            await self._write_frame(Frame(FIN, stream.stream_id))

    async def _serve_stream(self, stream: _Stream) -> None:
        try:
            reader, writer = await self._dial()
        except OSError as exc:
            self._forget_stream(stream)
            await self._dial_failed(exc)
            await self._finish(stream)
            return
        stream.writer = writer
        upload = asyncio.ensure_future(self._to_destination(stream, writer))
        try:
            while data := await reader.read(self._read_size):
                await self._write_frame(Frame(PSH, stream.stream_id, data))
        except ConnectionError:
            pass
        finally:
            # Either side ending ends both, like the agent's two io.Copy calls.
            writer.close()
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await upload
            self._forget_stream(stream)
        await self._finish(stream)

    def _forget_stream(self, stream: _Stream) -> None:
        """The stream is gone: what it held unread is dropped and its room given back (smux's streamClosed)."""
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        if stream.unread:
            self._return_tokens(stream, stream.unread)

    async def _to_destination(self, stream: _Stream, writer: asyncio.StreamWriter) -> None:
        while (data := await stream.incoming.get()) is not None:
            self._return_tokens(stream, len(data))  # read from the stream, as io.Copy's Read does
            writer.write(data)
            await writer.drain()
        writer.close()  # the client's FIN: the read side sees the end and sends FIN back

    async def close(self) -> None:
        for stream in list(self._streams.values()):
            if stream.writer is not None:
                stream.writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._streams.clear()


def smux_keepalive(agent_version: tuple[int, ...], client_version: tuple[int, ...]) -> bool:
    """Whether the agent's smux session sends NOPs and times out (versions as integer tuples)."""
    if agent_version < KEEPALIVE_OFF_FROM_AGENT:
        return True
    if agent_version < KEEPALIVE_BY_CLIENT_FROM_AGENT:
        return False
    return client_version <= KEEPALIVE_OFF_AFTER_CLIENT
