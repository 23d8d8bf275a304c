"""A far end that sends and does not read what the client sends back (its acks) must not make
the client queue acks without bound: copies of one message are answered at most once per
retransmission timeout, and past ``LinkConfig.write_backlog_limit`` unsent the client stops
reading until the far end reads again, or ends the channel after ``drain_timeout``.

The far end here is a hand-written WebSocket server on a raw socket, so that it can stop
reading, which no websockets server does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from ssmchannel import DataChannel
from ssmchannel.link_terms import LinkConfig
from ssmchannel.messages import MessageType, PayloadType
from ssmchannel.messages.fast import encode_frame
from tests.ssmchannel.aio import async_test

Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def server_frame(data: bytes) -> bytes:
    """One binary WebSocket frame as a server sends it (unmasked)."""
    n = len(data)
    if n < 126:
        head = bytes([0x82, n])
    elif n < 65536:
        head = bytes([0x82, 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x82, 127]) + struct.pack("!Q", n)
    return head + data


def output(sequence_number: int, payload: bytes = b"") -> bytes:
    return server_frame(encode_frame(MessageType.OUTPUT_STREAM_DATA, sequence_number, 0, PayloadType.OUTPUT, payload))


def count_binary_frames(data: bytes) -> int:
    """Binary frames in what a client sent (masked frames; the payloads are not read)."""
    count, at = 0, 0
    while at + 2 <= len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if length == 126:
            length = struct.unpack("!H", data[at : at + 2])[0]
            at += 2
        elif length == 127:
            length = struct.unpack("!Q", data[at : at + 8])[0]
            at += 8
        at += 4 + length  # the mask key, then the payload
        count += opcode == 0x2
    return count


async def accept_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())  # noqa: S324 - RFC 6455
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


@contextlib.asynccontextmanager
async def far_end(peer: Peer, **options: Any) -> AsyncIterator[DataChannel]:
    """A DataChannel connected to ``peer`` (which gets the socket after the WebSocket opening)."""
    tasks: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await accept_websocket(reader, writer)
            await peer(reader, writer)
            await asyncio.Event().wait()  # the connection stays until the test is done with it
        except ConnectionError:
            pass  # the client gave up on us: what some tests want
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # No handshake: the first output message is taken as an old agent's (see DataChannel.start).
    channel = await DataChannel.connect(
        f"ws://127.0.0.1:{port}/", "tok", ping_interval=None, handshake_timeout=5, **options
    )
    try:
        yield channel
    finally:
        channel.transport.connection.transport.abort()  # type: ignore[attr-defined]
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def reading(writer: asyncio.StreamWriter, on: bool) -> None:
    """Stop (or resume) reading the socket: what the client sends then waits in its own buffer."""
    transport = cast(asyncio.Transport, writer.transport)
    if on:
        transport.resume_reading()
    else:
        transport.pause_reading()


def unsent(channel: DataChannel) -> int:
    return int(channel.transport.connection.transport.get_write_buffer_size())  # type: ignore[attr-defined]


@async_test
async def test_copies_of_one_message_are_answered_at_most_once_per_retransmission_timeout() -> None:
    received = asyncio.get_running_loop().create_future()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reading(writer, False)  # reads nothing the client sends while it floods
        # 200,000 copies of one output message (sequence 0, empty): the first is taken, the
        # rest are copies of a message already acknowledged.
        copies = output(0) * 1000
        for _ in range(200):
            writer.write(copies)
            await writer.drain()
        await asyncio.sleep(1)
        reading(writer, True)
        sent = b""
        with contextlib.suppress(TimeoutError):
            while chunk := await asyncio.wait_for(reader.read(1 << 20), 0.5):
                sent += chunk
        received.set_result(sent)

    async with far_end(flood) as channel:
        peak = 0
        while not received.done():
            peak = max(peak, unsent(channel))
            await asyncio.sleep(0.01)
        assert channel.closed_reason is None
        # Before: one ack per copy, 40 MB queued for a peer that does not read.
        assert peak < 256 * 1024, f"{peak:,} bytes of acks queued"
        # The opening (a text frame), the first message's ack, then a copy answered once per
        # timeout (200 ms: the client sent nothing to measure a round trip with).
        acks = count_binary_frames(received.result())
        assert 2 <= acks <= 50, acks


@async_test
async def test_a_peer_that_stops_reading_is_held_back_and_then_left() -> None:
    config = LinkConfig(drain_timeout=2.0)
    done = asyncio.Event()

    async def send_and_never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reading(writer, False)
        # 100,000 messages, each new (an ack each is right): ~28 MB of acks to queue unbounded.
        for start in range(0, 100_000, 1000):
            writer.write(b"".join(output(n) for n in range(start, start + 1000)))
            await writer.drain()
        await done.wait()

    async with far_end(send_and_never_read, config=config) as channel:
        peak = 0
        for _ in range(1000):
            peak = max(peak, unsent(channel))
            if channel.closed_reason is not None:
                break
            await asyncio.sleep(0.01)
        done.set()
        # Over the limit, the client stops reading; what one read brought still gets its acks.
        assert peak < config.write_backlog_limit + 2 * 1024 * 1024, f"{peak:,} bytes of acks queued"
        assert channel.closed_reason == (
            f"the peer stopped reading: over {config.write_backlog_limit:,} bytes waited 2 s to be sent"
        )


@async_test
async def test_a_peer_that_reads_again_gets_the_rest() -> None:
    count = 40_000  # ~11 MB of acks, past the limit

    async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reading(writer, False)
        sending = asyncio.ensure_future(
            asyncio.to_thread(lambda: b"".join(output(n, b"%c" % (n % 256)) for n in range(count)))
        )
        writer.write(await sending)
        await asyncio.sleep(1.5)  # not reading: the client stops reading too
        reading(writer, True)
        while await reader.read(1 << 20):
            pass

    async with far_end(slow_reader, config=LinkConfig(drain_timeout=10.0)) as channel:
        data = await asyncio.wait_for(channel.readexactly(count), 20)
        assert data == bytes(n % 256 for n in range(count))
        assert channel.closed_reason is None
