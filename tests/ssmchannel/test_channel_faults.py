"""Property: whatever the wire does (loss, duplication, reordering, delay), the bytes arrive
exactly, in order, once.

The client DataChannel and devcloud's agent side talk over an in-memory pipe with faults
injected in both directions; the agent forwards to a TCP echo server, so every byte crosses
the channel twice.
"""

from __future__ import annotations

import asyncio
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devcloud.streams import AgentSession, Faults, FaultyTransport, StreamTarget
from ssmchannel.channel import INPUT_PAYLOAD_SIZE, DataChannel
from ssmchannel.link_terms import LinkConfig
from ssmchannel.transport import memory_pair
from tests.ssmchannel.aio import TEST_TIMEOUT

# Short timeouts keep each example quick; the logic is the same as with the defaults.
FAST = LinkConfig(initial_rtt=0.005, initial_rto=0.02, max_rto=0.05, clock_granularity=0.002, resend_interval=0.005)

faults = st.builds(
    Faults,
    loss=st.floats(0, 0.3),
    duplication=st.floats(0, 0.3),
    reorder_window=st.integers(0, 8),
    delay=st.sampled_from([0.0, 0.002, 0.01]),
    incoming_loss=st.floats(0, 0.3),
    seed=st.integers(0, 2**32),
)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def round_trip(
    payload: bytes, writes: list[int], agent_faults: Faults, client_faults: Faults, payload_size: int
) -> bytes:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client_end, agent_end = memory_pair()
    client_side = FaultyTransport(client_end, client_faults, random.Random(client_faults.seed))
    agent_side = FaultyTransport(agent_end, agent_faults, random.Random(agent_faults.seed))
    channel = DataChannel(client_side, token="t", config=FAST, ping_interval=None, payload_size=payload_size)
    starting = asyncio.create_task(channel.start(handshake_timeout=20))
    assert isinstance(await agent_end.recv(), str)  # the open frame; StreamServer checks it
    agent = AgentSession(agent_side, StreamTarget(token="t", port=port), session_id="s", config=FAST)
    agent_run = asyncio.create_task(agent.run())
    await starting

    async def write_all() -> None:
        view, at = memoryview(payload), 0
        for size in writes:
            await channel.write(bytes(view[at : at + size]))
            at += size
        await channel.write(bytes(view[at:]))

    writer = asyncio.create_task(write_all())
    received = await channel.readexactly(len(payload))
    await writer
    await channel.close()
    await asyncio.wait_for(agent_run, 10)
    server.close()
    await server.wait_closed()
    return received


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(0, 48 * 1024),
    seed=st.integers(0, 2**32),
    writes=st.lists(st.integers(1, 5000), max_size=8),
    agent_faults=faults,
    client_faults=faults,
    payload_size=st.sampled_from([1024, 3000, INPUT_PAYLOAD_SIZE]),  # the plugin's, odd, ours
)
def test_bytes_arrive_exactly_despite_faults(
    size: int, seed: int, writes: list[int], agent_faults: Faults, client_faults: Faults, payload_size: int
) -> None:
    payload = random.Random(seed).randbytes(size)
    trip = round_trip(payload, writes, agent_faults, client_faults, payload_size)
    received = asyncio.run(asyncio.wait_for(trip, TEST_TIMEOUT))
    assert received == payload


def test_faults_really_happen() -> None:
    """Guard against a fault injector that quietly does nothing."""
    heavy = Faults(loss=0.2, duplication=0.2, reorder_window=4, delay=0.002, incoming_loss=0.2, seed=7)
    client_end, agent_end = None, None

    async def scenario() -> tuple[dict[str, int], dict[str, int]]:
        nonlocal client_end, agent_end
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client_end, agent_end = memory_pair()
        client_side = FaultyTransport(client_end, heavy, random.Random(1))
        agent_side = FaultyTransport(agent_end, heavy, random.Random(2))
        channel = DataChannel(client_side, token="t", config=FAST, ping_interval=None)
        starting = asyncio.create_task(channel.start(handshake_timeout=20))
        await agent_end.recv()
        agent = AgentSession(agent_side, StreamTarget(token="t", port=port), session_id="s", config=FAST)
        agent_run = asyncio.create_task(agent.run())
        await starting
        payload = random.Random(3).randbytes(200_000)
        writer = asyncio.create_task(channel.write(payload))
        assert await channel.readexactly(len(payload)) == payload
        await writer
        await channel.close()
        await agent_run
        server.close()
        return dict(client_side.stats), dict(agent_side.stats)

    client_stats, agent_stats = asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT))
    for stats in (client_stats, agent_stats):
        assert stats["dropped"] > 10
        assert stats["duplicated"] > 10
        assert stats["reordered"] > 10
        assert stats["incoming_dropped"] > 10
