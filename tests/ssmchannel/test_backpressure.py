"""A reader that falls behind holds the agent back through TCP (the link stops reading the
WebSocket while the read buffer is full), instead of refusing messages the agent then resends."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from websockets.asyncio.client import connect

from devcloud.streams import StreamServer, StreamTarget
from ssmchannel import DataChannel
from ssmchannel.documents import PORT_FORWARDING_DOCUMENT
from ssmchannel.messages import MessageType, peek_message_type
from ssmchannel.transport import Frame, WebSocketTransport
from tests.ssmchannel.aio import async_test

LIMIT = 64 * 1024


class _Counting(WebSocketTransport):
    """The real transport, noting the sequence number of every output message that arrives."""

    arrivals: Counter[int]

    async def recv(self) -> Frame:
        frame = await super().recv()
        if isinstance(frame, bytes) and peek_message_type(frame) == MessageType.OUTPUT_STREAM_DATA:
            self.arrivals[int.from_bytes(frame[48:56], "big", signed=True)] += 1
        return frame


@async_test
async def test_a_stalled_reader_holds_the_agent_back_instead_of_refusing_messages() -> None:
    data = os.urandom(2 * 1024 * 1024)

    async def blast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        await reader.read()  # until the session ends

    destination = await asyncio.start_server(blast, "127.0.0.1", 0)
    port = destination.sockets[0].getsockname()[1]
    target = StreamTarget(token="tok", port=port, document_name=PORT_FORWARDING_DOCUMENT)
    streams = StreamServer(resolve_session={"s-1": target}.get)
    base = await asyncio.to_thread(streams.start)
    try:
        transport = _Counting(await connect(f"{base}/v1/data-channel/s-1", compression=None))
        transport.arrivals = Counter()
        channel = DataChannel(transport, token="tok", read_buffer_limit=LIMIT, ping_interval=None)
        await channel.start()
        try:
            await asyncio.sleep(1.5)  # not reading: the buffer fills up to its limit and stops there
            assert LIMIT <= len(channel._read_buffer) < LIMIT + 64 * 1024
            assert not channel.room.is_set()
            received = await channel.readexactly(len(data))
        finally:
            await channel.close()
    finally:
        await asyncio.to_thread(streams.stop)
        destination.close()

    assert received == data
    assert len(transport.arrivals) >= len(data) // 1024
    # Refused messages would all come again (hundreds of them). Held back by TCP, only the
    # oldest unacknowledged one is resent on each timeout while the reader stalls, and a few
    # go twice when it resumes.
    again = [sequence for sequence, count in transport.arrivals.items() if count > 1]
    assert len(again) <= 20, again
