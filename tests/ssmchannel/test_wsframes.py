"""The lean binary-frame path (FrameTap) under real websockets connections on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from ssmchannel.errors import TransportClosed
from ssmchannel.transport import WebSocketTransport
from ssmchannel.wsframes import HIGH_WATER_BYTES, FrameTap
from tests.ssmchannel.aio import async_test

# Every length encoding (7-bit, 16-bit, 64-bit) and the edges between them, and an empty frame.
SIZES = [0, 1, 125, 126, 127, 1144, 65535, 65536, 100_000]


async def _receive(transport: WebSocketTransport, count: int) -> list[bytes | str]:
    frames: list[bytes | str] = []
    while len(frames) < count:
        frames.extend(await transport.recv_batch())
    return frames


async def _echo_server(tapped: list[bool]) -> Any:
    """Each connection: the opening TEXT frame through websockets, then the fast path (when
    websockets holds nothing unread: the client sends nothing before ``ready``); echoes binary frames."""

    async def handle(websocket: ServerConnection) -> None:
        transport = WebSocketTransport(websocket)
        assert await transport.recv() == "open"
        tapped.append(transport.enable_fast_path())
        transport.send_nowait(b"ready")  # as the agent's HandshakeRequest: the client waits for it
        try:
            while True:
                frames = await transport.recv_batch()
                binary = [frame for frame in frames if isinstance(frame, bytes)]
                if binary:
                    transport.send_batch_nowait(binary)
        except TransportClosed:
            return

    return await serve(handle, "127.0.0.1", 0, compression=None, ping_interval=None)


@contextlib.asynccontextmanager
async def _tapped_pair() -> AsyncIterator[tuple[Any, WebSocketTransport]]:
    """The echo server and a client on the fast path past the opening; asserts the server tapped once."""
    tapped: list[bool] = []
    server = await _echo_server(tapped)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}", compression=None, ping_interval=None) as websocket:
            client = WebSocketTransport(websocket)
            assert client.enable_fast_path()
            await client.send("open")
            assert await asyncio.wait_for(client.recv(), 10) == b"ready"
            yield websocket, client
            assert tapped == [True]
    finally:
        server.close()
        await server.wait_closed()


@async_test
async def test_frames_of_every_length_pass_both_ways_masked_and_in_order() -> None:
    async with _tapped_pair() as (_, client):
        payloads = [os.urandom(size) for size in SIZES * 3]
        for payload in payloads[:9]:
            client.send_nowait(payload)
        client.send_batch_nowait(payloads[9:])
        echoed = await asyncio.wait_for(_receive(client, len(payloads)), 20)
        assert echoed == payloads


@async_test
async def test_a_ping_hands_the_connection_back_to_websockets_without_losing_order() -> None:
    async with _tapped_pair() as (websocket, client):
        first = [b"a" * 300, b"b" * 70_000]
        client.send_batch_nowait(first)
        assert await asyncio.wait_for(_receive(client, 2), 20) == first
        # The server's tap meets a ping: websockets answers it, and frames keep their order.
        pong = await websocket.ping(b"p")
        await asyncio.wait_for(pong, 10)
        then = [bytes([n]) * (n * 1000 + 1) for n in range(1, 6)]
        client.send_batch_nowait(then)
        assert await asyncio.wait_for(_receive(client, len(then)), 20) == then


@async_test
async def test_the_tap_stays_out_when_websockets_holds_unread_bytes_and_closing_ends_recv() -> None:
    async def handle(websocket: ServerConnection) -> None:
        await websocket.send(b"early")  # before the client's tap: websockets has read it
        await websocket.send(b"late")
        await asyncio.sleep(0.2)
        await websocket.close(1000, "bye")

    server = await serve(handle, "127.0.0.1", 0, compression=None, ping_interval=None)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}", compression=None, ping_interval=None) as websocket:
            await asyncio.sleep(0.1)
            client = WebSocketTransport(websocket)
            assert not client.enable_fast_path()  # unread frames wait in websockets' queue
            assert await client.recv_batch() == [b"early"]
            assert await client.recv() == b"late"
            try:
                await asyncio.wait_for(client.recv_batch(), 10)
            except TransportClosed as exc:
                assert "bye" in exc.reason
            else:
                raise AssertionError("recv_batch returned after the close")
    finally:
        server.close()
        await server.wait_closed()


@async_test
async def test_a_frame_that_arrives_in_pieces_is_received_once_whole() -> None:
    # A read that holds only part of a frame wakes the waiting receiver: it must wait on for the
    # rest, not fall through to websockets' own recv (which never hears of frames the tap parses).
    async with _tapped_pair() as (websocket, client):
        for payload in (os.urandom(70_000), os.urandom(300)):
            assert client._tap is not None
            frame = client._tap.encode_binary(payload)
            for start in range(0, len(frame), 1000):  # each piece a read of its own on the server
                websocket.transport.write(frame[start : start + 1000])
                await asyncio.sleep(0.002 if start < 20_000 else 0)
            assert await asyncio.wait_for(_receive(client, 1), 10) == [payload]


def test_client_masks_come_from_one_pool_per_thread_and_never_repeat_within_it() -> None:
    """The mask pool is shared by every connection of a thread (not 4 KiB per connection): a
    refill never hands out bytes already given, and another thread has its own pool."""
    import threading

    from ssmchannel import wsframes

    pool = wsframes._mask_pool
    pool.next()  # the pool is filled (or already was)
    pool.at = len(pool.masks)  # used up: the next mask starts a fresh fill
    masks = [pool.next() for _ in range(wsframes._MASK_POOL // 4)]
    # Each fill is handed out once, 4 bytes at a time, in order.
    assert b"".join(masks) == pool.masks and len(pool.masks) == wsframes._MASK_POOL
    pool.next()  # the next call refills
    assert pool.at == 4
    elsewhere: list[object] = []
    thread = threading.Thread(target=lambda: elsewhere.append(wsframes._mask_pool.__dict__.get("masks")))
    thread.start()
    thread.join()
    assert elsewhere == [b""]


@async_test
async def test_a_stalled_reader_stops_the_tap_reading_at_a_byte_limit_and_taking_resumes_it() -> None:
    """Nobody takes the frames (a slow browser or local client: the channel stops taking them).
    The tap must stop reading the socket once ``HIGH_WATER_BYTES`` are queued, so TCP holds the
    peer back: counting frames alone (4,096 of up to max_size each) let a far end fill GiBs.
    Taking the frames resumes reading, and every frame still arrives, in order."""
    count, size = 200, 64 * 1024  # 12.5 MiB, well under 4,096 frames
    payloads = [bytes([n]) * size for n in range(count)]

    async def flood(websocket: ServerConnection) -> None:
        await websocket.recv()  # the client's tap is installed
        for payload in payloads:
            await websocket.send(payload)
        await websocket.wait_closed()

    server = await serve(flood, "127.0.0.1", 0, compression=None, ping_interval=None)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}", compression=None, ping_interval=None) as websocket:
            frame_tap = FrameTap(websocket)
            assert frame_tap.install()
            await websocket.send("go")
            queued, steady = -1, 0
            while steady < 3:  # until it stops growing
                await asyncio.sleep(0.2)
                now = sum(map(len, frame_tap.frames))
                steady = steady + 1 if now == queued else 0
                queued = now
            # One read (up to 256 KiB) and one frame may pass the threshold before reading stops.
            assert HIGH_WATER_BYTES <= queued <= HIGH_WATER_BYTES + 512 * 1024
            received: list[bytes] = []
            while len(received) < count:
                await asyncio.wait_for(frame_tap.wait(), 10)
                received.extend(frame_tap.take())
            assert received == payloads
    finally:
        server.close()
        await server.wait_closed()


@async_test
async def test_a_frame_trickled_in_small_reads_is_gathered_in_place() -> None:
    """A frame that arrives a little per read (a slow or hostile peer) is gathered in one buffer that
    each read extends, not copied whole on every read: 1 MiB in 256-byte reads was 2 GiB copied.
    (The CPU time this saves: benchmarks/wsframes_trickle.py.)"""

    async def idle(websocket: ServerConnection) -> None:
        await websocket.wait_closed()

    server = await serve(idle, "127.0.0.1", 0, compression=None, ping_interval=None)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}", compression=None, ping_interval=None) as websocket:
            frame_tap = FrameTap(websocket)
            assert frame_tap.install()
            length = 1024 * 1024 - 16
            frame = bytes((0x82, 127)) + length.to_bytes(8, "big") + b"z" * length
            pieces = [frame[at : at + 256] for at in range(0, len(frame), 256)]
            frame_tap._data_received(pieces[0])
            frame_tap._data_received(pieces[1])
            gathering = frame_tap._buffer
            assert isinstance(gathering, bytearray) and len(gathering) == 512
            for piece in pieces[2:-1]:
                frame_tap._data_received(piece)
                assert frame_tap._buffer is gathering  # extended where it is, never a new copy
            assert len(gathering) == len(frame) - len(pieces[-1])
            frame_tap._data_received(pieces[-1])
            assert [len(f) for f in frame_tap.take()] == [length]
            assert frame_tap._buffer == b""
    finally:
        server.close()
        await server.wait_closed()
