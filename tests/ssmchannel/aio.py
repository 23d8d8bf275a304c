"""Running ``async def`` tests without an asyncio plugin (the suite must not need Django's plugins
or any other), and a scripted agent for driving a DataChannel frame by frame."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from ssmchannel.channel import DataChannel
from ssmchannel.messages import (
    CONTROL_FLAGS,
    ChannelClosed,
    ClientMessage,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    MessageType,
    PayloadType,
    RequestedClientAction,
    acknowledge_message,
)
from ssmchannel.transport import MemoryTransport, memory_pair

TEST_TIMEOUT = 60.0


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run the coroutine test in a fresh event loop, with a timeout so a hang fails."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), TEST_TIMEOUT))

    return wrapper


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedAgent:
    """The agent's end of an in-memory channel, under the test's control."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport
        self.next_sequence_number = 0
        self.acks: list[int] = []  # sequence numbers the client acknowledged, in order

    async def frame(self, timeout: float = 2.0) -> bytes | str:
        return await asyncio.wait_for(self.transport.recv(), timeout)

    async def message(self, timeout: float = 2.0) -> ClientMessage:
        frame = await self.frame(timeout)
        assert isinstance(frame, bytes), f"expected a binary frame, got {frame!r}"
        return ClientMessage.decode(frame)

    async def data(self, timeout: float = 2.0) -> ClientMessage:
        """The next input_stream_data message; acks before it are recorded in ``acks``."""
        while True:
            message = await self.message(timeout)
            if message.message_type == MessageType.ACKNOWLEDGE:
                self.acks.append(json.loads(message.payload)["AcknowledgedMessageSequenceNumber"])
                continue
            assert message.message_type == MessageType.INPUT_STREAM_DATA, message.message_type
            return message

    async def ack(self, timeout: float = 2.0) -> int:
        """The sequence number of the next acknowledge (anything else is a failure)."""
        message = await self.message(timeout)
        assert message.message_type == MessageType.ACKNOWLEDGE, message
        seq = json.loads(message.payload)["AcknowledgedMessageSequenceNumber"]
        self.acks.append(seq)
        return int(seq)

    async def nothing(self, wait: float = 0.1) -> None:
        try:
            frame = await asyncio.wait_for(self.transport.recv(), wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {ClientMessage.decode(frame) if isinstance(frame, bytes) else frame}")

    def output(self, payload: bytes, payload_type: int = PayloadType.OUTPUT, seq: int | None = None) -> ClientMessage:
        """Build (not send) the agent's next output_stream_data message."""
        if seq is None:
            seq = self.next_sequence_number
            self.next_sequence_number += 1
        return ClientMessage(
            message_type=MessageType.OUTPUT_STREAM_DATA, sequence_number=seq, payload_type=payload_type, payload=payload
        )

    async def send(self, message: ClientMessage | bytes) -> None:
        await self.transport.send(message if isinstance(message, bytes) else message.encode())

    async def send_output(self, payload: bytes, payload_type: int = PayloadType.OUTPUT) -> ClientMessage:
        message = self.output(payload, payload_type)
        await self.send(message)
        return message

    async def acknowledge(self, message: ClientMessage) -> None:
        await self.send(acknowledge_message(message))

    async def control(self, message_type: MessageType, payload: bytes = b"") -> None:
        await self.send(ClientMessage(message_type=message_type, flags=CONTROL_FLAGS, payload=payload))

    async def close_channel(self, output: str) -> None:
        await self.control(MessageType.CHANNEL_CLOSED, ChannelClosed(session_id="s-1", output=output).to_payload())

    async def handshake(
        self,
        actions: tuple[RequestedClientAction, ...] | None = None,
        agent_version: str = "3.3.1142.0",
        complete: bool = True,
    ) -> HandshakeResponse:
        if actions is None:
            actions = (
                RequestedClientAction("SessionType", {"SessionType": "Port", "Properties": {"portNumber": "22"}}),
            )
        request = HandshakeRequest(agent_version=agent_version, requested_client_actions=actions)
        await self.send_output(request.to_payload(), PayloadType.HANDSHAKE_REQUEST)
        reply = await self.data()
        assert reply.payload_type == PayloadType.HANDSHAKE_RESPONSE
        await self.acknowledge(reply)
        if complete:
            await self.send_output(HandshakeComplete(1000, "welcome").to_payload(), PayloadType.HANDSHAKE_COMPLETE)
        return HandshakeResponse.from_payload(reply.payload)


async def open_scripted(**options: Any) -> tuple[DataChannel, ScriptedAgent, str]:
    """A started DataChannel on a memory pair, past a default handshake; returns the open frame too."""
    client_end, agent_end = memory_pair()
    options.setdefault("ping_interval", None)
    channel = DataChannel(client_end, token="tok", **options)
    agent = ScriptedAgent(agent_end)
    start = asyncio.create_task(channel.start(handshake_timeout=5))
    opening = await agent.frame()
    assert isinstance(opening, str)
    await agent.handshake()
    await start
    assert agent.acks == [0]  # HandshakeRequest, acknowledged before the response
    assert await agent.ack() == 1  # HandshakeComplete
    agent.acks.clear()
    return channel, agent, opening
