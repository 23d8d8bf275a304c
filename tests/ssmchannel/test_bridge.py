"""asyncssh and plain sockets over a DataChannel, through devcloud's stream server."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from devcloud.streams import Faults, StreamServer, StreamTarget
from ssmchannel import ChannelClosedError, DataChannel, channel_socket, channel_streams, splice
from tests.ssmchannel.aio import async_test
from tests.ssmchannel.sshd import shout, start_sshd, start_streams


@async_test
async def test_asyncssh_runs_over_the_channel() -> None:
    sshd, port = await start_sshd(process_factory=shout)
    streams, base = await start_streams(port, faults=Faults(loss=0.05, duplication=0.05, reorder_window=3, seed=5))
    try:
        async with (
            DataChannel.open(f"{base}/v1/data-channel/s-1", "tok") as channel,
            channel_socket(channel) as sock,
            asyncssh.connect("i-0123456789abcdef0", sock=sock, username="rs-x", known_hosts=None) as ssh,
        ):
            result = await ssh.run("shout", input="hello over ssm\n" * 2000, check=True)
        assert result.stdout == "shout: " + "HELLO OVER SSM\n" * 2000
        assert channel.closed_reason is not None
    finally:
        await asyncio.to_thread(streams.stop)
        sshd.close()


@async_test
async def test_splice_forwards_a_local_port() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    streams = StreamServer(
        resolve_session={
            "s-1": StreamTarget(token="tok", port=target_port, document_name="AWS-StartPortForwardingSession")
        }.get
    )
    base = await asyncio.to_thread(streams.start)
    try:
        async with DataChannel.open(f"{base}/v1/data-channel/s-1", "tok") as channel:
            spliced: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await splice(channel, reader, writer)
                spliced.set_result(None)

            local = await asyncio.start_server(forward, "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection("127.0.0.1", local.sockets[0].getsockname()[1])
            writer.write(b"x" * 100_000)
            await writer.drain()
            assert await reader.readexactly(100_000) == b"x" * 100_000
            writer.close()  # the local side ends first: splice delivers, returns, leaves the channel open
            await asyncio.wait_for(spliced, 10)
            assert channel.closed_reason is None
            local.close()
    finally:
        await asyncio.to_thread(streams.stop)
        target.close()


@async_test
async def test_channel_streams_gives_asyncio_streams() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    streams = StreamServer(resolve_session={"s-1": StreamTarget(token="tok", port=port)}.get)
    base = await asyncio.to_thread(streams.start)
    try:
        async with (
            DataChannel.open(f"{base}/v1/data-channel/s-1", "tok") as channel,
            channel_streams(channel) as (reader, writer),
        ):
            writer.write(b"line one\nline two\n")
            assert await reader.readline() == b"line one\n"
            assert await reader.readline() == b"line two\n"
    finally:
        await asyncio.to_thread(streams.stop)
        target.close()


@async_test
async def test_resolver_failure_closes_with_internal_error() -> None:
    def broken(session_id: str) -> StreamTarget | None:
        raise LookupError(session_id)

    streams = StreamServer(resolve_session=broken)
    base = await asyncio.to_thread(streams.start)
    try:
        with pytest.raises(ChannelClosedError, match="1011"):
            await DataChannel.connect(f"{base}/v1/data-channel/s-1", "tok")
    finally:
        await asyncio.to_thread(streams.stop)
