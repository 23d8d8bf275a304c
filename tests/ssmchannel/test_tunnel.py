"""ssmchannel.tunnel: asyncssh straight over a DataChannel, and the transport's contract on its own."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncssh
import pytest

from devcloud.streams import Faults
from ssmchannel import ChannelClosedError, DataChannel
from ssmchannel.tunnel import ChannelTransport, ChannelTunnel
from tests.ssmchannel.aio import async_test
from tests.ssmchannel.sshd import shout, start_sshd, start_streams

# NUL, a byte past ASCII, escapes and a line ending of each kind, as a shell might print them.
NASTY = "\x00\xff caf\u00e9 \x1b[31m\x1b]0;title\x07\r\n\n" * 100


@async_test
async def test_asyncssh_runs_over_the_channel_with_loss_duplication_and_reordering() -> None:
    sshd, port = await start_sshd(process_factory=shout)
    streams, base = await start_streams(port, faults=Faults(loss=0.05, duplication=0.05, reorder_window=3, seed=7))
    try:
        async with DataChannel.open(f"{base}/v1/data-channel/s-1", "tok") as channel:
            tunnel = ChannelTunnel(channel)
            async with asyncssh.connect("i-0123456789abcdef0", tunnel=tunnel, username="x", known_hosts=None) as ssh:
                first = await ssh.run("shout", input="hello over ssm\n" * 4000, check=True)
                second = await ssh.run("again", input=NASTY, check=True)
                assert ssh.get_extra_info("peername") == ("ssm-data-channel", 0)
            # The SSH connection is over; the channel is still its owner's to close.
            assert tunnel.transport is not None and tunnel.transport.is_closing()
        assert first.stdout == "shout: " + "HELLO OVER SSM\n" * 4000
        assert second.stdout == "again: " + NASTY.upper()
    finally:
        await asyncio.to_thread(streams.stop)
        sshd.close()


@async_test
async def test_the_far_end_closing_ends_the_ssh_connection() -> None:
    async def leave(process: asyncssh.SSHServerProcess[str]) -> None:
        process.exit(0)
        process.channel.get_connection().close()  # the server hangs up the whole connection

    sshd, port = await start_sshd(process_factory=leave)
    streams, base = await start_streams(port)
    try:
        async with DataChannel.open(f"{base}/v1/data-channel/s-1", "tok") as channel:
            ssh = await asyncssh.connect("i-1", tunnel=ChannelTunnel(channel), username="x", known_hosts=None)
            await ssh.run("bye")
            await asyncio.wait_for(ssh.wait_closed(), 10)
    finally:
        await asyncio.to_thread(streams.stop)
        sshd.close()


def test_a_tunnel_carries_one_connection() -> None:
    async def main() -> None:
        tunnel = ChannelTunnel(cast(DataChannel, FakeChannel()))
        await tunnel.create_connection(Recorder, "instance", 22)
        with pytest.raises(RuntimeError, match="one connection"):
            await tunnel.create_connection(Recorder, "instance", 22)
        tunnel.close()
        await asyncio.sleep(0)

    asyncio.run(main())


# --- the transport's contract, against a channel whose every step the test decides -------


class FakeChannel:
    """``read`` gives what the test feeds (b"" is the end); ``write`` waits while ``gate`` is shut."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.written: list[bytes] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.write_error: BaseException | None = None

    async def read(self, n: int = -1) -> bytes:
        item = await self.incoming.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def write(self, data: bytes) -> None:
        await self.gate.wait()
        if self.write_error is not None:
            raise self.write_error
        self.written.append(data)


class Recorder(asyncio.Protocol):
    def __init__(self, *, keep_open_at_eof: bool = False, fail_on: bytes | None = None) -> None:
        self.events: list[Any] = []
        self.keep_open_at_eof = keep_open_at_eof
        self.fail_on = fail_on

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        if data == self.fail_on:
            raise ValueError("bad packet")
        self.events.append(data)

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.keep_open_at_eof

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", type(exc).__name__ if exc else None))


def _started(channel: FakeChannel, protocol: Recorder) -> ChannelTransport:
    transport = ChannelTransport(cast(DataChannel, channel), protocol)
    transport.start()
    return transport


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_writes_reach_the_channel_in_order_while_it_makes_them_wait() -> None:
    async def main() -> list[bytes]:
        channel, protocol = FakeChannel(), Recorder()
        transport = _started(channel, protocol)
        channel.gate.clear()
        transport.write(b"one ")
        await _settle()  # the first write is now waiting on the channel
        transport.write(b"two ")
        transport.write(bytearray(b"three "))
        transport.write(memoryview(b"four"))
        transport.write(b"")
        assert transport.get_write_buffer_size() == len(b"two three four")
        channel.gate.set()
        await _settle()
        transport.abort()
        return channel.written

    assert b"".join(asyncio.run(main())) == b"one two three four"


def test_close_sends_what_was_written_then_tells_the_protocol_once() -> None:
    async def main() -> tuple[list[bytes], list[Any], bool]:
        channel, protocol = FakeChannel(), Recorder()
        transport = _started(channel, protocol)
        channel.gate.clear()
        transport.write(b"last words")
        transport.close()
        transport.write(b"after close")  # dropped, as by a socket transport
        transport.close()
        await _settle()
        assert ("lost", None) not in protocol.events  # still sending
        channel.gate.set()
        await _settle()
        channel.incoming.put_nowait(b"too late")
        await _settle()
        return channel.written, protocol.events, transport.is_closing()

    written, events, closing = asyncio.run(main())
    assert written == [b"last words"]
    assert events == ["made", ("lost", None)]
    assert closing


def test_abort_drops_what_is_waiting_and_tells_the_protocol_once() -> None:
    async def main() -> tuple[list[bytes], list[Any]]:
        channel, protocol = FakeChannel(), Recorder()
        transport = _started(channel, protocol)
        channel.gate.clear()
        transport.write(b"stuck")
        await _settle()
        transport.write(b"never")
        transport.abort()
        transport.abort()
        transport.close()
        channel.gate.set()
        await _settle()
        return channel.written, protocol.events

    written, events = asyncio.run(main())
    assert written == []
    assert events == ["made", ("lost", None)]


def test_the_channels_end_is_eof_then_lost() -> None:
    async def main() -> list[Any]:
        channel, protocol = FakeChannel(), Recorder()
        _started(channel, protocol)
        channel.incoming.put_nowait(b"hello")
        channel.incoming.put_nowait(b"")
        await _settle()
        return protocol.events

    assert asyncio.run(main()) == ["made", b"hello", "eof", ("lost", None)]


def test_a_protocol_that_keeps_the_transport_open_at_eof_can_still_write() -> None:
    async def main() -> tuple[list[Any], list[bytes]]:
        channel, protocol = FakeChannel(), Recorder(keep_open_at_eof=True)
        transport = _started(channel, protocol)
        channel.incoming.put_nowait(b"")
        await _settle()
        transport.write(b"reply")
        await _settle()
        transport.close()
        await _settle()
        return protocol.events, channel.written

    events, written = asyncio.run(main())
    assert events == ["made", "eof", ("lost", None)]
    assert written == [b"reply"]


@pytest.mark.parametrize("side", ["read", "write"])
def test_a_closed_channel_is_a_lost_connection_with_its_reason(side: str) -> None:
    async def main() -> list[Any]:
        channel, protocol = FakeChannel(), Recorder()
        transport = _started(channel, protocol)
        if side == "read":
            channel.incoming.put_nowait(ChannelClosedError("agent said goodbye"))
        else:
            channel.write_error = ChannelClosedError("agent said goodbye")
            transport.write(b"x")
        await _settle()
        transport.write(b"ignored")
        await _settle()
        return protocol.events

    assert asyncio.run(main()) == ["made", ("lost", "ChannelClosedError")]


def test_a_protocol_failing_on_received_data_ends_the_connection() -> None:
    async def main() -> list[Any]:
        channel, protocol = FakeChannel(), Recorder(fail_on=b"poison")
        _started(channel, protocol)
        channel.incoming.put_nowait(b"fine")
        channel.incoming.put_nowait(b"poison")
        channel.incoming.put_nowait(b"never read")
        await _settle()
        return protocol.events

    assert asyncio.run(main()) == ["made", b"fine", ("lost", "ValueError")]
