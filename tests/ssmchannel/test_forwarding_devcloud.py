"""PortForwarder with real DataChannels against devcloud's agent, which serves smux on its own code
(devcloud/streams/smux.py): many TCP connections over one session, and the destination hanging up."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from devcloud.streams import StreamServer, StreamTarget
from ssmchannel.channel import DataChannel
from ssmchannel.forwarding import PortForwarder
from tests.ssmchannel.aio import async_test

FORWARD = "AWS-StartPortForwardingSession"


@contextlib.asynccontextmanager
async def _forward_to(
    handler: Any, agent_version: str | None = None
) -> AsyncIterator[tuple[int, PortForwarder, list[DataChannel], list[int]]]:
    """A destination served by ``handler``, a devcloud session reaching it, and a local listener
    served by a PortForwarder; yields the local port, the forwarder, its channels, and the
    destination's accepted connections."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted) + 1)
        with contextlib.suppress(ConnectionError):
            await handler(len(accepted), reader, writer)
        writer.close()

    destination = await asyncio.start_server(serve, "127.0.0.1", 0)
    target = StreamTarget(token="tok", port=destination.sockets[0].getsockname()[1], document_name=FORWARD)
    if agent_version is not None:
        target = dataclasses.replace(target, agent_version=agent_version)
    streams = StreamServer(resolve_session={"s-1": target}.get)
    base = await asyncio.to_thread(streams.start)
    channels: list[DataChannel] = []

    async def open_channel() -> DataChannel:
        channel = await DataChannel.connect(f"{base}/v1/data-channel/s-1", "tok", multiplex=True)
        channels.append(channel)
        return channel

    forwarder = PortForwarder(open_channel)
    local = await asyncio.start_server(forwarder.handle, "127.0.0.1", 0)
    try:
        yield local.sockets[0].getsockname()[1], forwarder, channels, accepted
    finally:
        local.close()
        await forwarder.aclose()
        await asyncio.to_thread(streams.stop)
        destination.close()


async def _echo(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def _bye(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(f"bye {number}\n".encode())
    await writer.drain()


async def _round_trip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    received = await asyncio.wait_for(reader.readexactly(len(payload)), 30)
    writer.close()
    return received


@async_test
async def test_concurrent_connections_share_one_multiplexed_session() -> None:
    async with _forward_to(_echo) as (port, forwarder, channels, accepted):
        payloads = [bytes([65 + n]) * (20_000 + 3_333 * n) for n in range(5)]
        results = await asyncio.gather(*(_round_trip(port, p) for p in payloads))
        assert results == payloads
        assert forwarder.sessions_opened == 1 and channels[0].multiplexed
        assert len(accepted) == 5  # one destination connection per stream
        # A later connection still rides the same session.
        assert await _round_trip(port, b"later") == b"later"
        assert forwarder.sessions_opened == 1 and channels[0].closed_reason is None


@async_test
async def test_destination_hanging_up_ends_only_its_connection() -> None:
    async with _forward_to(_bye) as (port, forwarder, channels, accepted):
        for number in (1, 2, 3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 10) == f"bye {number}\n".encode()  # then EOF
            writer.close()
        assert forwarder.sessions_opened == 1 and channels[0].closed_reason is None
        assert accepted == [1, 2, 3]


@async_test
async def test_an_agent_without_smux_gets_a_session_per_connection() -> None:
    async with _forward_to(_echo, agent_version="3.0.196.0") as (port, forwarder, channels, _):
        assert await _round_trip(port, b"one") == b"one"
        assert await _round_trip(port, b"two") == b"two"
        assert forwarder.single_stream and forwarder.sessions_opened == 2
        assert not any(channel.multiplexed for channel in channels)
