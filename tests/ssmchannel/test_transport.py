"""WebSocketTransport's queued sends over a real WebSocket on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from ssmchannel.errors import TransportClosed
from ssmchannel.transport import FLUSH_BYTES, WebSocketTransport
from tests.ssmchannel.aio import async_test


async def _server(received: list[bytes], done: asyncio.Event, expect: int) -> Any:
    async def handle(websocket: ServerConnection) -> None:
        async for message in websocket:
            assert isinstance(message, bytes)
            received.append(message)
            if len(received) == expect:
                done.set()
                await websocket.close(1000, "enough")

    return await serve(handle, "127.0.0.1", 0)


def _count_writes(transport: WebSocketTransport) -> list[int]:
    sizes: list[int] = []
    socket_transport = transport.connection.transport
    write = socket_transport.write

    def counting(data: Any) -> None:
        sizes.append(len(data))
        write(data)

    socket_transport.write = counting  # type: ignore[method-assign]
    return sizes


@async_test
async def test_frames_of_one_loop_turn_leave_in_one_write_in_order() -> None:
    received: list[bytes] = []
    done = asyncio.Event()
    server = await _server(received, done, expect=3)
    port = server.sockets[0].getsockname()[1]
    async with connect(f"ws://127.0.0.1:{port}", compression=None) as websocket:
        transport = WebSocketTransport(websocket)
        writes = _count_writes(transport)
        for frame in (b"one", b"two", b"three"):
            transport.send_nowait(frame)
        assert writes == []  # queued until the loop turns
        await asyncio.wait_for(done.wait(), 5)
        assert received == [b"one", b"two", b"three"]
        # One write held all three (2 header bytes and a 4-byte mask each); then the close reply.
        assert writes[0] == (2 + 4) * 3 + len(b"onetwothree")
        # The server closed with a reason: queuing more says so, as send() would.
        await asyncio.wait_for(websocket.wait_closed(), 5)
        with pytest.raises(TransportClosed, match="1000: enough"):
            transport.send_nowait(b"late")
    server.close()


@async_test
async def test_a_large_queue_is_written_without_waiting_for_the_loop() -> None:
    received: list[bytes] = []
    done = asyncio.Event()
    server = await _server(received, done, expect=2)
    port = server.sockets[0].getsockname()[1]
    async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as websocket:
        transport = WebSocketTransport(websocket)
        writes = _count_writes(transport)
        transport.send_nowait(b"a" * (FLUSH_BYTES // 2))
        assert writes == []
        transport.send_nowait(b"b" * (FLUSH_BYTES // 2))
        assert len(writes) == 1  # both frames, at once
        await transport.drain()
        await asyncio.wait_for(done.wait(), 5)
        assert [len(m) for m in received] == [FLUSH_BYTES // 2] * 2
    server.close()
