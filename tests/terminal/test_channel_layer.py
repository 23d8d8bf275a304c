"""The Redis channel layer must survive quiet spells: a terminal may print nothing for minutes.

redis-py 8 gives every socket a 5 s read timeout unless told otherwise, and channels_redis
blocks on Redis for 5 s at a time while it waits for a message; with both, a quiet consumer's
receive loop dies with ``redis.exceptions.TimeoutError`` and the browser loses its terminal.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from channels_redis.utils import create_pool

pytestmark = pytest.mark.integration


def test_the_layer_reads_without_a_socket_timeout() -> None:
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer), "tests run with REDIS_URL: the real layer"
    pool = create_pool(layer.hosts[0])
    assert pool.connection_kwargs.get("socket_timeout") is None


def test_a_message_after_a_quiet_spell_still_arrives() -> None:
    async def scenario() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel("quiet.")

        async def later() -> None:
            await asyncio.sleep(12)  # more than two of channels_redis's 5 s blocking reads
            await layer.send(channel, {"type": "terminal.close", "reason": "still here"})

        sender = asyncio.create_task(later())
        try:
            return await asyncio.wait_for(layer.receive(channel), timeout=60)
        finally:
            await sender
            await layer.flush()

    assert asyncio.run(scenario())["reason"] == "still here"
