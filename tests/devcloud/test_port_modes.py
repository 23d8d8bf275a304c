"""How devcloud's agent serves a port session: smux or basic, as the real agent's port plugin decides.

The smux client here is the test's own (headers packed by hand with ``struct``): it shares no
code with devcloud's server or with ssmchannel's client, so a codec bug on either side cannot
hide behind the same bug on the other.
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import struct
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings

from devcloud.server import DevCloud
from devcloud.streams import StreamTarget
from devcloud.streams.agent import BASIC, MUX, port_mode
from devcloud.streams.smux import smux_keepalive
from devcloud.streams.target import MIN_AGENT_VERSION
from ssmchannel import ChannelClosedError, DataChannel
from tests.devcloud.helpers import Aws
from tests.ssmchannel.aio import async_test

FORWARD = "AWS-StartPortForwardingSession"
OLD_CLIENT = "1.1.61.0"  # what ssmchannel reported before it spoke smux
MODERN_CLIENT = "1.2.707.0"


class _Greeter(socketserver.BaseRequestHandler):
    """Says which connection this is, then echoes; counts connections."""

    connections = 0
    lock = threading.Lock()

    def handle(self) -> None:
        with _Greeter.lock:
            _Greeter.connections += 1
            number = _Greeter.connections
        self.request.sendall(f"hello {number}\n".encode())
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _ByeAndHangUp(socketserver.BaseRequestHandler):
    connections = 0

    def handle(self) -> None:
        _ByeAndHangUp.connections += 1
        self.request.sendall(f"bye {_ByeAndHangUp.connections}\n".encode())


def _serve(handler: type[socketserver.BaseRequestHandler]) -> Iterator[int]:
    handler.connections = 0  # type: ignore[attr-defined]
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def greeter() -> Iterator[int]:
    yield from _serve(_Greeter)


@pytest.fixture
def hang_up() -> Iterator[int]:
    yield from _serve(_ByeAndHangUp)


class MiniSmux:
    """A minimal smux v1 client over a DataChannel, for these tests only."""

    HEADER = "<BBHI"  # version, command, length (LE u16), stream id (LE u32)

    def __init__(self, channel: DataChannel) -> None:
        self.channel = channel
        self.next_id = 3  # client streams are odd; smux's client counter starts at 1 and adds 2 first
        self.received: dict[int, bytearray] = defaultdict(bytearray)
        self.finished: set[int] = set()
        self.total = 0
        self.nops = 0
        self.ended = False  # the channel gave no more data
        self._buffer = bytearray()
        self._changed = asyncio.Condition()
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while chunk := await self.channel.read():
            self.total += len(chunk)
            self._buffer += chunk
            while len(self._buffer) >= 8:
                version, command, length, stream_id = struct.unpack_from(self.HEADER, self._buffer)
                assert version == 1 and command in (1, 2, 3), (version, command)
                if len(self._buffer) < 8 + length:
                    break
                data = bytes(self._buffer[8 : 8 + length])
                del self._buffer[: 8 + length]
                if command == 2:
                    self.received[stream_id] += data
                elif command == 1:
                    self.finished.add(stream_id)
                else:
                    self.nops += 1
            async with self._changed:
                self._changed.notify_all()
        self.ended = True
        async with self._changed:
            self._changed.notify_all()

    async def open(self) -> int:
        stream_id, self.next_id = self.next_id, self.next_id + 2
        await self.channel.write(struct.pack(self.HEADER, 1, 0, 0, stream_id))
        return stream_id

    async def send(self, stream_id: int, data: bytes) -> None:
        await self.channel.write(struct.pack(self.HEADER, 1, 2, len(data), stream_id) + data)

    async def raw(self, command: int, stream_id: int) -> None:
        await self.channel.write(struct.pack(self.HEADER, 1, command, 0, stream_id))

    async def until(self, condition: Callable[[], bool]) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), 10)

    async def read_line(self, stream_id: int) -> bytes:
        await self.until(lambda: b"\n" in self.received[stream_id])
        line, _, rest = bytes(self.received[stream_id]).partition(b"\n")
        self.received[stream_id] = bytearray(rest)
        return line + b"\n"

    async def stop(self) -> None:
        self._pump.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._pump


@async_test
async def test_smux_streams_run_concurrently_each_on_its_own_connection(serve_target: Any, greeter: int) -> None:
    stream_url = serve_target(StreamTarget(token="tok", port=greeter, document_name=FORWARD))
    async with DataChannel.open(stream_url, "tok", client_version="1.1.70") as channel:
        mux = MiniSmux(channel)
        await asyncio.sleep(0.3)
        # Nothing is dialled (so no greeting comes) before the client opens a stream.
        assert (_Greeter.connections, mux.total) == (0, 0)

        first, second = await asyncio.gather(mux.open(), mux.open())
        greetings = await asyncio.gather(mux.read_line(first), mux.read_line(second))
        assert sorted(greetings) == [b"hello 1\n", b"hello 2\n"]

        await asyncio.gather(mux.send(first, b"one\n"), mux.send(second, b"two\n" * 5000))
        assert await mux.read_line(first) == b"one\n"
        await mux.until(lambda: len(mux.received[second]) >= 20000)
        assert bytes(mux.received[second]) == b"two\n" * 5000
        mux.received[second].clear()
        assert mux.received[first] == b""

        await mux.raw(3, 0)  # NOP: ignored
        await mux.send(99, b"nobody")  # PSH for a stream never opened: dropped
        await mux.raw(1, first)  # FIN: the agent closes that connection and FINs back
        await mux.until(lambda: first in mux.finished)
        await mux.send(second, b"still here\n")
        assert await mux.read_line(second) == b"still here\n"
        assert _Greeter.connections == 2 and second not in mux.finished
        assert channel.closed_reason is None
        await mux.stop()


@async_test
async def test_smux_destination_closing_ends_only_its_stream(serve_target: Any, hang_up: int) -> None:
    stream_url = serve_target(StreamTarget(token="tok", port=hang_up, document_name=FORWARD))
    async with DataChannel.open(stream_url, "tok", client_version=MODERN_CLIENT) as channel:
        mux = MiniSmux(channel)
        for number in (1, 2):
            stream_id = await mux.open()
            assert await mux.read_line(stream_id) == f"bye {number}\n".encode()
            await mux.until(lambda stream_id=stream_id: stream_id in mux.finished)  # type: ignore[misc]
        assert channel.closed_reason is None
        await mux.stop()


@async_test
async def test_smux_stream_to_a_closed_port_is_refused(serve_target: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, never listening
        stream_url = serve_target(StreamTarget(token="tok", port=probe.getsockname()[1], document_name=FORWARD))
        async with DataChannel.open(stream_url, "tok", client_version=MODERN_CLIENT) as channel:
            mux = MiniSmux(channel)
            refused = await mux.open()
            # The agent sends ConnectToPortError (on which ssmchannel gives up) and FINs the stream.
            await mux.until(lambda: refused in mux.finished or mux.ended)
            assert refused in mux.finished or "could not connect" in (channel.closed_reason or "")


@pytest.mark.parametrize(
    ("document", "client_version", "agent_version"),
    [
        (FORWARD, OLD_CLIENT, "3.3.1142.0"),  # the client is too old for smux
        (FORWARD, "1.1.69.9", "3.3.1142.0"),
        (FORWARD, MODERN_CLIENT, "3.0.196.0"),  # the agent is too old for smux
        ("AWS-StartSSHSession", MODERN_CLIENT, "3.3.1142.0"),  # SSH is never multiplexed
    ],
)
@async_test
async def test_basic_mode_forwards_raw_bytes_at_once(
    serve_target: Any, greeter: int, document: str, client_version: str, agent_version: str
) -> None:
    target = StreamTarget(token="tok", port=greeter, document_name=document, agent_version=agent_version)
    assert port_mode(target, client_version) == BASIC
    async with DataChannel.open(serve_target(target), "tok", client_version=client_version) as channel:
        assert await channel.readexactly(8) == b"hello 1\n"  # dialled at once, no stream needed
        await channel.write(b"ping")
        assert await channel.readexactly(4) == b"ping"


def test_smux_needs_port_forwarding_a_new_client_and_a_new_agent() -> None:
    forward = StreamTarget(token="t", port=1, document_name=FORWARD)
    assert port_mode(forward, "1.1.70") == MUX
    assert port_mode(forward, "1.1.70.0") == MUX
    assert port_mode(forward, "1.1.7") == BASIC
    assert port_mode(forward, "") == BASIC
    assert port_mode(forward, "not-a-version") == BASIC
    newer = StreamTarget(token="t", port=1, document_name=FORWARD, agent_version="3.0.196.1")
    assert port_mode(newer, MODERN_CLIENT) == MUX


@async_test
async def test_basic_port_forwarding_reconnects_on_next_data_after_the_destination_closes(
    serve_target: Any, hang_up: int
) -> None:
    stream_url = serve_target(StreamTarget(token="tok", port=hang_up, document_name=FORWARD))
    async with DataChannel.open(stream_url, "tok", client_version=OLD_CLIENT) as channel:
        assert await channel.readexactly(6) == b"bye 1\n"
        await asyncio.sleep(0.3)
        assert channel.closed_reason is None and _ByeAndHangUp.connections == 1  # no redial by itself
        await channel.write(b"again")
        assert await channel.readexactly(6) == b"bye 2\n"
        assert channel.closed_reason is None


@async_test
async def test_ssh_session_ends_when_the_destination_closes(serve_target: Any, hang_up: int) -> None:
    stream_url = serve_target(StreamTarget(token="tok", port=hang_up, document_name="AWS-StartSSHSession"))
    async with DataChannel.open(stream_url, "tok", client_version=MODERN_CLIENT) as channel:
        assert await channel.readexactly(6) == b"bye 1\n"
        assert await channel.read() == b""
        assert channel.channel_closed is not None


def test_the_agent_and_the_portal_agree_on_the_oldest_agent() -> None:
    assert MIN_AGENT_VERSION == settings.PASSPORT_MIN_AGENT_VERSION == "2.3.672.0"


@pytest.mark.parametrize("agent_version", ["3.2.582.0", "2.3.672.0"])
def test_the_handshake_reports_the_instances_agent_version(
    aws: Aws, cloud: DevCloud, greeter: int, agent_version: str
) -> None:
    instance = aws.launch("versioned", **{"devcloud:agent-version": agent_version})
    started = aws.client("ssm").start_session(
        Target=instance, DocumentName=FORWARD, Parameters={"portNumber": [str(greeter)]}
    )

    async def talk() -> tuple[str | None, bytes]:
        async with DataChannel.open(started["StreamUrl"], started["TokenValue"], client_version=OLD_CLIENT) as ch:
            return ch.agent_version, await ch.readexactly(8)

    assert asyncio.run(asyncio.wait_for(talk(), 30)) == (agent_version, b"hello 1\n")


def test_an_agent_older_than_the_minimum_is_refused(aws: Aws, cloud: DevCloud, greeter: int) -> None:
    instance = aws.launch("ancient", **{"devcloud:agent-version": "2.3.100.0"})
    started = aws.client("ssm").start_session(
        Target=instance, DocumentName=FORWARD, Parameters={"portNumber": [str(greeter)]}
    )

    async def talk() -> None:
        async with DataChannel.open(started["StreamUrl"], started["TokenValue"]):
            pass

    with pytest.raises(ChannelClosedError, match=r"SSM Agent 2\.3\.100\.0 .* 2\.3\.672\.0 or newer"):
        asyncio.run(asyncio.wait_for(talk(), 30))
    assert _Greeter.connections == 0


@pytest.mark.parametrize(
    ("agent", "client", "on"),
    [
        ((3, 1, 1418, 0), (1, 2, 707, 0), True),  # before 3.1.1446.0 the agent always kept smux alive
        ((3, 1, 1446, 0), (1, 1, 70, 0), False),  # 3.1.1446.0 turned it off...
        ((3, 1, 1511, 0), (1, 2, 707, 0), False),
        ((3, 1, 1575, 0), (1, 2, 331, 0), True),  # ...and 3.1.1575.0 back on for clients up to 1.2.331.0
        ((3, 3, 1142, 0), (1, 2, 331, 1), False),
        ((3, 3, 1142, 0), (1, 1, 70), True),
    ],
)
def test_smux_keepalive_follows_agent_and_client_versions(
    agent: tuple[int, ...], client: tuple[int, ...], on: bool
) -> None:
    assert smux_keepalive(agent, client) is on


@async_test
async def test_smux_keepalive_pings_and_ends_a_silent_session(serve_target: Any, greeter: int) -> None:
    target = StreamTarget(token="tok", port=greeter, document_name=FORWARD, agent_version="3.1.1418.0")
    stream_url = serve_target(target, mux_keepalive=(0.1, 0.5))
    async with DataChannel.open(stream_url, "tok", client_version=MODERN_CLIENT) as channel:
        mux = MiniSmux(channel)
        for _ in range(12):  # 1.2 s: the client's NOPs keep the session alive
            await mux.raw(3, 0)
            await asyncio.sleep(0.1)
        assert channel.closed_reason is None and mux.nops >= 5
        await mux.until(lambda: mux.ended)  # then silence: the agent's smux gives up
        assert "keepalive" in (channel.closed_reason or "")


@async_test
async def test_no_smux_keepalive_for_a_modern_client_of_a_modern_agent(serve_target: Any, greeter: int) -> None:
    stream_url = serve_target(StreamTarget(token="tok", port=greeter, document_name=FORWARD), mux_keepalive=(0.1, 0.3))
    async with DataChannel.open(stream_url, "tok", client_version=MODERN_CLIENT) as channel:
        mux = MiniSmux(channel)
        await asyncio.sleep(1.0)
        assert (mux.nops, mux.ended, channel.closed_reason) == (0, False, None)
        await mux.stop()
