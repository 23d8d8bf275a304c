"""devcloud's agent side frame by frame, against amazon-ssm-agent's datachannel.go: what its
HandshakeRequest holds, how long it waits for the answer, and what it holds ahead of the
expected message. The client here is hand-driven (raw frames over a raw WebSocket), so the
agent side's behaviour shows without ssmchannel's client answering for it."""

from __future__ import annotations

import asyncio
import base64
import json
import socketserver
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from devcloud.streams import StreamServer, StreamTarget
from ssmchannel.messages import (
    ClientMessage,
    HandshakeResponse,
    MessageType,
    OpenDataChannelInput,
    PayloadType,
    ProcessedClientAction,
    acknowledge_frame,
)
from tests.ssmchannel.aio import async_test


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def channel_url(echo_port: int) -> Iterator[Callable[..., str]]:
    """Start a StreamServer with one session to the echo port; its data-channel URL."""
    started: list[StreamServer] = []

    def start(**options: Any) -> str:
        server = StreamServer(resolve_session={"s-1": StreamTarget(token="tok", port=echo_port)}.get, **options)
        started.append(server)
        return f"{server.start()}/v1/data-channel/s-1"

    yield start
    for server in started:
        server.stop()


@asynccontextmanager
async def _opened(url: str) -> AsyncIterator[ClientConnection]:
    async with connect(url, compression=None, max_size=None) as ws:
        await ws.send(OpenDataChannelInput(token_value="tok", client_id="c", client_version="1.1.61.0").to_json())
        yield ws


async def _next(ws: ClientConnection, message_type: str, timeout: float) -> ClientMessage:
    while True:
        message = ClientMessage.decode(await asyncio.wait_for(ws.recv(), timeout))
        if message.message_type == message_type:
            return message


async def _handshake_request(ws: ClientConnection) -> dict[str, Any]:
    """The HandshakeRequest's JSON, acknowledged (as any client acknowledges what it receives)."""
    request = await _next(ws, MessageType.OUTPUT_STREAM_DATA, 10)
    assert request.payload_type == PayloadType.HANDSHAKE_REQUEST
    await ws.send(acknowledge_frame(request))
    payload: dict[str, Any] = json.loads(request.payload)
    return payload


@async_test
async def test_the_kms_action_carries_a_random_challenge(channel_url: Callable[..., str]) -> None:
    # model.go KMSEncryptionRequest{KMSKeyId, Challenge} (no omitempty); datachannel.go
    # buildHandshakeRequestPayload fills Challenge from blockcipher.go: 16 random bytes, base64.
    # (A short handshake timeout: the sessions, never answered, end soon after the test.)
    url = await asyncio.to_thread(channel_url, kms_key_id="alias/session-key", handshake_timeout=1.0)
    challenges = []
    for _ in range(2):
        async with _opened(url) as ws:
            payload = await _handshake_request(ws)
        kms = [a for a in payload["RequestedClientActions"] if a["ActionType"] == "KMSEncryption"]
        assert len(kms) == 1 and set(kms[0]["ActionParameters"]) == {"KMSKeyId", "Challenge"}, kms
        assert kms[0]["ActionParameters"]["KMSKeyId"] == "alias/session-key"
        challenges.append(kms[0]["ActionParameters"]["Challenge"])
    assert [len(base64.b64decode(c, validate=True)) for c in challenges] == [16, 16]
    assert challenges[0] != challenges[1]


@async_test
async def test_an_unanswered_handshake_ends_the_session_after_the_agents_15_seconds(
    channel_url: Callable[..., str],
) -> None:
    # datachannel.go handshakeTimeout = 15 * time.Second (PerformHandshake gives up then).
    url = await asyncio.to_thread(channel_url)
    async with _opened(url) as ws:
        await _handshake_request(ws)  # acknowledged, never answered (a client that knows no handshake)
        started = time.monotonic()
        closed = await _next(ws, MessageType.CHANNEL_CLOSED, 25)
        waited = time.monotonic() - started
    assert json.loads(closed.payload)["Output"].startswith("Handshake timed out.")
    assert 14 <= waited < 17, f"the session gave up on the handshake after {waited:.1f} s"


@async_test
async def test_the_agent_acknowledges_and_holds_5000_messages_of_1024_bytes_ahead(
    channel_url: Callable[..., str],
) -> None:
    # config.go IncomingMessageBufferCapacity = 100000 (the agent's, no byte limit); datachannel.go
    # handleStreamDataMessage acknowledges and buffers a message ahead while len(buffer) < capacity.
    # 5,000 of 1,024 bytes is past the plugin side's 4 MiB (LinkConfig.incoming_capacity_bytes).
    url = await asyncio.to_thread(channel_url)
    count = 5000
    acked: set[int] = set()
    async with _opened(url) as ws:
        await _handshake_request(ws)
        response = HandshakeResponse("1.1.61.0", (ProcessedClientAction("SessionType", 1),))
        await ws.send(
            ClientMessage(
                MessageType.INPUT_STREAM_DATA,
                sequence_number=0,
                payload_type=PayloadType.HANDSHAKE_RESPONSE,
                payload=response.to_payload(),
            ).encode()
        )
        while (await _next(ws, MessageType.OUTPUT_STREAM_DATA, 10)).payload_type != PayloadType.HANDSHAKE_COMPLETE:
            pass
        # Sequence number 1 is "lost": 2..count+1 arrive ahead of it.

        async def read_acks() -> None:
            while len(acked) < count:
                message = ClientMessage.decode(await ws.recv())
                if message.message_type == MessageType.ACKNOWLEDGE:
                    acked.add(json.loads(message.payload)["AcknowledgedMessageSequenceNumber"])

        reader = asyncio.create_task(read_acks())
        for seq in range(2, count + 2):
            message = ClientMessage(
                MessageType.INPUT_STREAM_DATA, sequence_number=seq, payload_type=PayloadType.OUTPUT, payload=b"x" * 1024
            )
            await ws.send(message.encode())
        with suppress(TimeoutError):
            await asyncio.wait_for(reader, 20)
    missing = sorted(set(range(2, count + 2)) - acked)
    assert not missing, f"{len(missing)} messages ahead were not acknowledged, the first {missing[0]}"
