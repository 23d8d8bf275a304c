"""Port forwarding modes: the handshake's choice, and PortForwarder holding one multiplexed session for
many local TCP connections (against the hand-written smux server in smux_peer.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from ssmchannel.channel import CLIENT_VERSION, CLOSE_TIMEOUT, DataChannel
from ssmchannel.forwarding import PortForwarder, splice_stream
from ssmchannel.messages import Flag, PayloadType, RequestedClientAction, encode_flag
from ssmchannel.portmode import MUX_CLIENT_VERSION, keepalive_interval, multiplexing_applies, version_tuple
from ssmchannel.smux import MuxSession
from ssmchannel.transport import memory_pair
from tests.ssmchannel.aio import ScriptedAgent, async_test
from tests.ssmchannel.smux_peer import FIN, PSH, SYN, FakeChannel, SmuxServer, frame, pipe

FORWARDING = {"portNumber": "3389", "type": "LocalPortForwarding"}


class TestModeRule:
    @pytest.mark.parametrize(
        ("session_type", "properties", "agent_version", "expected"),
        [
            ("Port", FORWARDING, "3.3.1142.0", True),
            ("Port", {"PortNumber": "3389", "Type": "LocalPortForwarding"}, "3.0.196.1", True),
            ("Port", FORWARDING, "3.0.196.0", False),  # above, not from
            ("Port", FORWARDING, "2.3.722.0", False),
            ("Port", FORWARDING, "garbage", False),
            ("Port", {"portNumber": "22"}, "3.3.1142.0", False),  # AWS-StartSSHSession
            ("Standard_Stream", FORWARDING, "3.3.1142.0", False),
            ("Port", None, "3.3.1142.0", False),
        ],
    )
    def test_plugins_rule(self, session_type: str, properties: object, agent_version: str, expected: bool) -> None:
        assert multiplexing_applies(session_type, properties, agent_version) is expected

    def test_reported_versions_sit_on_the_right_sides_of_the_agents_thresholds(self) -> None:
        assert version_tuple(CLIENT_VERSION) < (1, 1, 70)  # basic mode
        assert version_tuple(MUX_CLIENT_VERSION) > (1, 2, 331, 0)  # smux, keepalive off at new agents

    def test_keepalive_only_for_agents_that_keep_it_on(self) -> None:
        assert keepalive_interval("3.1.1511.0") == 10.0
        assert keepalive_interval("3.0.222.0") == 10.0
        assert keepalive_interval("3.1.1600.0") is None


async def _handshake(multiplex: bool, properties: dict[str, str], agent_version: str) -> tuple[DataChannel, str]:
    client_end, agent_end = memory_pair()
    channel = DataChannel(client_end, token="tok", ping_interval=None, multiplex=multiplex)
    agent = ScriptedAgent(agent_end)
    start = asyncio.create_task(channel.start(handshake_timeout=5))
    await agent.frame()
    action = RequestedClientAction("SessionType", {"SessionType": "Port", "Properties": properties})
    response = await agent.handshake(actions=(action,), agent_version=agent_version)
    await start
    return channel, response.client_version


class TestHandshake:
    @async_test
    async def test_modern_version_only_where_smux_is_served(self) -> None:
        channel, version = await _handshake(True, FORWARDING, "3.3.1142.0")
        assert (version, channel.multiplexed) == (MUX_CLIENT_VERSION, True)
        await channel.close(terminate=False)
        for multiplex, properties, agent_version in [
            (False, FORWARDING, "3.3.1142.0"),  # the caller cannot serve smux (proxy, the browser)
            (True, {"portNumber": "22"}, "3.3.1142.0"),  # an SSH session
            (True, FORWARDING, "3.0.196.0"),  # an agent the plugin would not multiplex with
        ]:
            channel, version = await _handshake(multiplex, properties, agent_version)
            assert (version, channel.multiplexed) == (CLIENT_VERSION, False)
            await channel.close(terminate=False)

    @async_test
    async def test_a_stream_that_cannot_connect_does_not_end_a_multiplexed_session(self) -> None:
        for multiplex, still_open in [(True, True), (False, False)]:
            client_end, agent_end = memory_pair()
            channel = DataChannel(client_end, token="tok", ping_interval=None, multiplex=multiplex)
            agent = ScriptedAgent(agent_end)
            start = asyncio.create_task(channel.start(handshake_timeout=5))
            await agent.frame()
            action = RequestedClientAction("SessionType", {"SessionType": "Port", "Properties": FORWARDING})
            await agent.handshake(actions=(action,))
            await start
            await agent.send_output(encode_flag(Flag.CONNECT_TO_PORT_ERROR), PayloadType.FLAG)
            await agent.ack()
            await agent.ack()
            await asyncio.sleep(0.05)
            assert (channel.closed_reason is None) is still_open
            assert channel.port_errors == (1 if multiplex else 0)
            await channel.close(terminate=False)


@contextlib.asynccontextmanager
async def _destination(handler: Any) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server standing for the instance's port; yields its port and a list of accepted connections."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted))
        with contextlib.suppress(ConnectionError):
            await handler(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield int(server.sockets[0].getsockname()[1]), accepted


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


@contextlib.asynccontextmanager
async def _forwarding(dest_port: int, multiplexed: bool = True) -> AsyncIterator[tuple[int, PortForwarder, list[Any]]]:
    """A local listener served by a PortForwarder whose sessions reach ``dest_port``."""
    opened: list[Any] = []

    async def open_channel() -> DataChannel:
        client_end = FakeChannel(multiplexed=multiplexed)
        server_end = pipe()[1]
        client_end.peer, server_end.peer = server_end, client_end
        opened.append((client_end, SmuxServer(server_end, dest_port) if multiplexed else server_end))
        return cast(DataChannel, client_end)

    forwarder = PortForwarder(open_channel)
    listener = await asyncio.start_server(forwarder.handle, "127.0.0.1", 0)
    try:
        async with listener:
            yield int(listener.sockets[0].getsockname()[1]), forwarder, opened
    finally:
        await forwarder.aclose()
        for _, server in opened:
            if isinstance(server, SmuxServer):
                await server.stop()


async def _round_trip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    received = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    writer.close()
    return received


class TestPortForwarder:
    @async_test
    async def test_concurrent_connections_share_one_session(self) -> None:
        async with _destination(_echo) as (dest_port, accepted), _forwarding(dest_port) as (port, forwarder, opened):

            async def client(n: int) -> bytes:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                payload = bytes([n]) * (50_000 + n * 7_001)
                writer.write(payload)
                await writer.drain()
                received = await reader.readexactly(len(payload))
                writer.close()
                return received if received == payload else b"mismatch"

            results = await asyncio.gather(*(client(n) for n in range(6)))
            assert [len(r) for r in results] == [50_000 + n * 7_001 for n in range(6)]
            assert forwarder.sessions_opened == 1 and len(opened) == 1
            assert len(accepted) == 6  # the agent dialled the destination once per stream
            server = opened[0][1]
            syns = sorted(sid for cmd, sid, _ in server.frames if cmd == SYN)
            assert syns == [3, 5, 7, 9, 11, 13]

    @async_test
    async def test_destination_closing_ends_only_its_stream(self) -> None:
        async def one_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            writer.write(b"bye " + line)
            await writer.drain()  # then the destination closes

        async with (
            _destination(one_line) as (dest_port, accepted),
            _forwarding(dest_port) as (port, forwarder, opened),
        ):
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
            for attempt in (b"one\n", b"two\n"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(attempt)
                assert await asyncio.wait_for(reader.read(), 5) == b"bye " + attempt  # read() to EOF
                writer.close()
            assert forwarder.sessions_opened == 1
            assert len(accepted) == 3  # the destination was dialled again for the second connection
            server = opened[0][1]
            # The destination's close reached the client as FIN, and the client's answer closed it.
            fins = [sid for cmd, sid, _ in server.frames if cmd == FIN]
            assert 5 in fins and 7 in fins
            idle_writer.close()
            assert idle_reader is not None

    @async_test
    async def test_a_session_that_ends_is_replaced_for_the_next_connection(self) -> None:
        async with _destination(_echo) as (dest_port, _), _forwarding(dest_port) as (port, forwarder, opened):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            opened[0][0].end("The access request was completed")
            assert await asyncio.wait_for(reader.read(), 5) == b""  # its stream ended with it
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"again")
            assert await reader.readexactly(5) == b"again"
            assert forwarder.sessions_opened == 2
            writer.close()

    @async_test
    async def test_a_session_found_dead_when_opening_a_stream_is_replaced_at_once(self) -> None:
        async with _destination(_echo) as (dest_port, _), _forwarding(dest_port) as (port, forwarder, opened):
            assert await _round_trip(port, b"first") == b"first"
            opened[0][0].closed_reason = "gone"  # writes fail; the session has not read the end yet
            assert forwarder.mux is not None and forwarder.mux.closed_reason is None
            assert await _round_trip(port, b"second") == b"second"
            assert forwarder.sessions_opened == 2

    @async_test
    async def test_basic_agent_gets_a_session_per_connection(self) -> None:
        async with _forwarding(0, multiplexed=False) as (port, forwarder, opened):
            readers = []
            for text in (b"first", b"second"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(text)
                readers.append((reader, writer))
            for _ in range(50):
                if len(opened) == 2 and all(end.peer and end.peer._buffer for end, _ in opened):
                    break
                await asyncio.sleep(0.02)
            # Raw bytes, no smux framing, one channel each.
            assert sorted([await server.read() for _, server in opened]) == [b"first", b"second"]
            assert forwarder.single_stream and forwarder.sessions_opened == 2
            for _, writer in readers:
                writer.close()


@contextlib.asynccontextmanager
async def _spliced(
    **options: Any,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, Any, asyncio.StreamWriter, asyncio.Task[None]]]:
    """``splice_stream`` between a local TCP connection and a stream whose far end (the agent) the
    test writes raw smux frames to. Yields the local client's reader and writer, the agent's pipe
    end, our end of the local connection, and the splice's task."""
    client_end, agent_end = pipe()
    mux = MuxSession(cast(DataChannel, client_end))
    mux.start()
    stream = await mux.open_stream()
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        local_reader, local_writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        reader, writer = await accepted.get()
        task = asyncio.create_task(splice_stream(stream, reader, writer, **options))
        try:
            yield local_reader, local_writer, agent_end, writer, task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            local_writer.close()
    finally:
        await mux.close()
        server.close()


class TestSpliceStream:
    @async_test
    async def test_a_closed_local_connection_ends_even_if_the_agent_never_sends_fin(self) -> None:
        """The local client closes, Passport sends FIN, and the agent never answers: waiting for
        its FIN without end kept the local socket (an fd) and two tasks per connection for the
        session's life. After ``CLOSE_TIMEOUT`` without a word from the agent both are closed."""
        async with _spliced() as (_, local_writer, agent_end, writer, task):
            local_writer.close()
            await asyncio.sleep(0.5)
            assert not task.done()  # the agent may still answer: its FIN is waited for, for a while
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT + 30)
            assert task.done() and task.exception() is None
            assert writer.is_closing()
            assert frame(FIN, 3) in bytes(agent_end._buffer)  # the FIN went out first

    @async_test
    async def test_a_half_closed_local_connection_gets_what_the_agent_still_sends(self) -> None:
        """Only silence ends the wait for the agent's FIN: while it still sends, the local side
        (which closed only its writing half) gets every byte, and the agent's FIN then ends it."""
        async with _spliced(fin_timeout=0.5) as (local_reader, local_writer, agent_end, _, task):
            local_writer.write_eof()
            for n in range(8):  # 1.6 s in all, more than three times fin_timeout
                await agent_end.write(frame(PSH, 3, b"%d;" % n))
                await asyncio.sleep(0.2)
            assert not task.done()
            await agent_end.write(frame(FIN, 3))
            assert await asyncio.wait_for(local_reader.read(), 5) == b"".join(b"%d;" % n for n in range(8))
            await asyncio.wait_for(task, 5)

    @async_test
    async def test_a_local_connection_that_fails_to_write_ends_at_once(self) -> None:
        """The local client is gone and the agent goes on sending without FIN: the failed write
        ends the connection at once, not when the agent falls silent."""
        # The agent's silence would end it only after an hour: what ends it is the failed write.
        async with _spliced(fin_timeout=3600) as (_, local_writer, agent_end, writer, task):
            local_writer.close()
            await local_writer.wait_closed()
            started = asyncio.get_running_loop().time()
            while not task.done() and asyncio.get_running_loop().time() - started < 30:
                await agent_end.write(frame(PSH, 3, b"x" * 1000))
                await asyncio.sleep(0.05)
            assert task.done() and task.exception() is None
            assert writer.is_closing()
