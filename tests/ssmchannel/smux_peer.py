"""Test doubles for the smux client: an in-memory byte pipe and a hand-written smux v1 server.

The server parses and builds frames itself (int.from_bytes, no ssmchannel.smux), so a codec bug
in the client cannot hide behind the same bug here. It plays the agent: each SYN dials the
destination port, PSH goes to it, its EOF becomes FIN, a FIN closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ssmchannel.errors import ChannelClosedError

SYN, FIN, PSH, NOP = 0, 1, 2, 3


def frame(cmd: int, sid: int, data: bytes = b"") -> bytes:
    return bytes([1, cmd]) + len(data).to_bytes(2, "little") + sid.to_bytes(4, "little") + data


class PipeEnd:
    """One end of an in-memory byte pipe with DataChannel's read/write/closed_reason."""

    def __init__(self) -> None:
        self.peer: PipeEnd | None = None
        self._buffer = bytearray()
        self._readable = asyncio.Event()
        self.closed_reason: str | None = None
        self.bytes_read = 0

    async def read(self, n: int = -1) -> bytes:
        while not self._buffer and self.closed_reason is None:
            self._readable.clear()
            await self._readable.wait()
        take = len(self._buffer) if n < 0 else min(n, len(self._buffer))
        data = bytes(self._buffer[:take])
        del self._buffer[:take]
        self.bytes_read += len(data)
        return data

    async def write(self, data: bytes) -> None:
        if self.closed_reason is not None:
            raise ChannelClosedError(self.closed_reason)
        assert self.peer is not None
        self.peer._buffer += data
        self.peer._readable.set()

    def end(self, reason: str) -> None:
        for side in (self, self.peer):
            if side is not None and side.closed_reason is None:
                side.closed_reason = reason
                side._readable.set()


def pipe() -> tuple[PipeEnd, PipeEnd]:
    a, b = PipeEnd(), PipeEnd()
    a.peer, b.peer = b, a
    return a, b


class FakeChannel(PipeEnd):
    """What PortForwarder needs of a DataChannel."""

    def __init__(self, *, multiplexed: bool, agent_version: str = "3.3.1142.0") -> None:
        super().__init__()
        self.multiplexed = multiplexed
        self.agent_version = agent_version
        self.close_calls = 0

    async def drain(self, timeout: float | None = None) -> bool:
        return True

    async def close(self, **options: Any) -> None:
        self.close_calls += 1
        self.end("closed by the client")


class SmuxServer:
    """The agent's side of a multiplexed session over ``end``, dialling 127.0.0.1:``port`` per stream."""

    def __init__(self, end: PipeEnd, port: int) -> None:
        self.end = end
        self.port = port
        self.frames: list[tuple[int, int, bytes]] = []  # everything the client sent, in order
        self.dialled: list[int] = []
        self._queues: dict[int, asyncio.Queue[bytes | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        buffer = bytearray()
        while data := await self.end.read():
            buffer += data
            while len(buffer) >= 8:
                assert buffer[0] == 1, f"version {buffer[0]}"
                cmd, length = buffer[1], int.from_bytes(buffer[2:4], "little")
                sid = int.from_bytes(buffer[4:8], "little")
                if len(buffer) < 8 + length:
                    break
                payload = bytes(buffer[8 : 8 + length])
                del buffer[: 8 + length]
                self.frames.append((cmd, sid, payload))
                if cmd == SYN:
                    self._queues[sid] = asyncio.Queue()
                    self._tasks.append(asyncio.create_task(self._stream(sid)))
                elif cmd == PSH and sid in self._queues:
                    self._queues[sid].put_nowait(payload)
                elif cmd == FIN and sid in self._queues:
                    self._queues[sid].put_nowait(None)

    async def _stream(self, sid: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.dialled.append(sid)
        queue = self._queues[sid]

        async def upstream() -> None:
            while (data := await queue.get()) is not None:
                writer.write(data)
                await writer.drain()
            writer.close()

        async def downstream() -> None:
            while data := await reader.read(5000):
                await self.end.write(frame(PSH, sid, data))
            await self.end.write(frame(FIN, sid))

        up = asyncio.create_task(upstream())
        with contextlib.suppress(ChannelClosedError, ConnectionError):
            await downstream()
        up.cancel()
        writer.close()

    async def stop(self) -> None:
        for task in [*self._tasks, self.task]:
            task.cancel()
        for task in [*self._tasks, self.task]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
