"""A Session Manager session outlives its data channel, as in AWS: a dropped WebSocket leaves the
session Disconnected (the agent keeps its connection to the target), ResumeSession hands out a new
token and stream URL that reconnect to the same session, and only TerminateSession, the idle
timeout or the agent ending it end it."""

from __future__ import annotations

import asyncio
import dataclasses
import socketserver
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect

from devcloud.server import DevCloud
from devcloud.streams.agent import AGENT_LINK_CONFIG
from ssmchannel import ChannelClosedError, DataChannel
from ssmchannel.link import ReliableLink
from ssmchannel.messages import ClientMessage, MessageType, OpenDataChannelInput, PayloadType
from ssmchannel.reliability import ReorderBuffer
from ssmchannel.transport import WebSocketTransport
from tests.devcloud.helpers import Aws

FORWARD = "AWS-StartPortForwardingSession"
OLD_CLIENT = "1.1.61.0"  # basic mode: one TCP connection, raw bytes


class _Echo(socketserver.ThreadingTCPServer):
    """Greets each connection with its number, echoes, and counts connections opened and closed."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.opened = self.closed = 0
        self.lock = threading.Lock()

    @property
    def port(self) -> str:
        return str(self.server_address[1])


class _EchoHandler(socketserver.BaseRequestHandler):
    server: _Echo

    def handle(self) -> None:
        with self.server.lock:
            self.server.opened += 1
            number = self.server.opened
        self.request.sendall(f"hello {number}\n".encode())
        while data := self.request.recv(65536):
            self.request.sendall(data)
        with self.server.lock:
            self.server.closed += 1


@pytest.fixture
def echo() -> Iterator[_Echo]:
    server = _Echo()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return value


def _status(cloud: DevCloud, session_id: str) -> str:
    session = cloud.runtime.sessions.get(session_id)
    assert session is not None
    return session.status


def _described(ssm: Any, session_id: str, state: str) -> list[str]:
    sessions = ssm.describe_sessions(State=state, Filters=[{"key": "SessionId", "value": session_id}])["Sessions"]
    return [s["Status"] for s in sessions]


async def _talk_then_drop(url: str, token: str) -> tuple[int, int]:
    """Read the greeting, echo a line, then drop the WebSocket without the TerminateSession flag.

    Returns the link's next sequence number and the next output sequence number it expects, which
    a resuming client carries on from (as session-manager-plugin keeps them across a reconnect).
    """
    channel = await DataChannel.connect(url, token, client_version=OLD_CLIENT)
    try:
        assert await channel.readexactly(8) == b"hello 1\n"
        await channel.write(b"first\n")
        assert await channel.readexactly(6) == b"first\n"
    finally:
        await channel.close(terminate=False)
    return channel.link.next_sequence_number, channel.link.incoming.expected


class _Output:
    """A resuming client's LinkHandler: collects the agent's output."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.arrived = asyncio.Event()

    def accepts(self, message: ClientMessage) -> bool:
        return True

    async def deliver(self, message: ClientMessage) -> None:
        if message.payload_type == PayloadType.OUTPUT:
            self.data += message.payload
            self.arrived.set()

    async def control(self, message: ClientMessage) -> None:
        pass


@asynccontextmanager
async def _resumed(
    url: str,
    token: str,
    sent: int,
    *,
    expected: int | None = None,
    incoming: ReorderBuffer[ClientMessage] | None = None,
) -> AsyncIterator[tuple[ReliableLink, _Output]]:
    """Reconnect with ResumeSession's token and go on from the old sequence numbers: the next one to
    send, and the output's (the next one expected, or all the client held of it); the link and what
    it receives, running until the block ends."""
    websocket = await connect(url, compression=None)
    transport = WebSocketTransport(websocket)
    await transport.send(
        OpenDataChannelInput(token_value=token, client_id="resumer", client_version=OLD_CLIENT).to_json()
    )
    output = _Output()
    link = ReliableLink(
        transport, output, outgoing_type=MessageType.INPUT_STREAM_DATA, incoming_type=MessageType.OUTPUT_STREAM_DATA
    )
    link.next_sequence_number = sent
    if incoming is not None:
        link.incoming = incoming
    if expected is not None:
        link.incoming.expected = expected
    running = asyncio.create_task(link.run())
    try:
        yield link, output
    finally:
        await link.close("test done")
        await transport.close()
        running.cancel()


async def _resume_and_echo(url: str, token: str, sent: int, expected: int, line: bytes) -> bytes:
    """Resume (``_resumed``) and echo ``line``."""
    async with _resumed(url, token, sent, expected=expected) as (link, output):
        await link.send_data(PayloadType.OUTPUT, line)
        while line not in output.data:
            output.arrived.clear()
            await asyncio.wait_for(output.arrived.wait(), 10)
        return bytes(output.data)


# A download: the destination sends this much at once, a pattern whose order shows.
DOWNLOAD = (bytes(range(251)) * (4 * 1024 * 1024 // 251 + 1))[: 4 * 1024 * 1024]


class _Download(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(DOWNLOAD)
        while self.request.recv(65536):
            pass


@pytest.fixture
def download() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Download)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield str(server.server_address[1])
    server.shutdown()
    server.server_close()


async def _read_a_little_then_drop(url: str, token: str) -> tuple[bytes, int, ReorderBuffer[ClientMessage]]:
    """Start the download, stop reading so the agent's output waits unacknowledged, drop the WebSocket.

    Returns what the client read (all it will get from this channel), the sequence number it sends
    next, and what it holds of the output (the next sequence number it expects, and any message
    acknowledged out of order while an earlier one was refused for want of room): a resuming client
    goes on from its own state, as the plugin's reconnect does in one process. Only what it never
    acknowledged is the agent's to resend.
    """
    channel = await DataChannel.connect(url, token, client_version=OLD_CLIENT, read_buffer_limit=65536)
    try:
        received = bytearray(await channel.readexactly(1024))
        await asyncio.sleep(0.5)  # the agent's window fills with output we do not acknowledge
    finally:
        await channel.close(terminate=False)
    while data := await channel.read():  # acknowledged before the drop: ours, never resent
        received += data
    return bytes(received), channel.link.next_sequence_number, channel.link.incoming


async def _resume_and_read(url: str, token: str, sent: int, incoming: ReorderBuffer[ClientMessage], size: int) -> bytes:
    """Resume (``_resumed``) with what the client held of the output and read ``size`` bytes."""
    async with _resumed(url, token, sent, incoming=incoming) as (_, output):
        while len(output.data) < size:
            output.arrived.clear()
            await asyncio.wait_for(output.arrived.wait(), 10)
        return bytes(output.data)


def test_a_drop_mid_download_keeps_the_session_and_resume_session_gets_every_byte_in_order(
    aws: Aws, cloud: DevCloud, download: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output unacknowledged at the drop is kept (the session stays Disconnected, past the link's
    ack_timeout too) and resent in order once the session is resumed, as AWS's agent does."""
    # Read when a session starts; the agent's link otherwise.
    monkeypatch.setattr(cloud.streams, "config", dataclasses.replace(AGENT_LINK_CONFIG, ack_timeout=2.0))
    ssm = aws.client("ssm")
    started = ssm.start_session(Target=aws.launch("dropped-mid-download"), DocumentName=FORWARD,
                                Parameters={"portNumber": [download]})  # fmt: skip
    session_id = started["SessionId"]
    received, sent, incoming = asyncio.run(
        asyncio.wait_for(_read_a_little_then_drop(started["StreamUrl"], started["TokenValue"]), 30)
    )
    assert 1024 <= len(received) < len(DOWNLOAD)

    _wait(lambda: _status(cloud, session_id) != "Connected", "the session to leave Connected")
    time.sleep(3.0)  # past the agent's ack_timeout: nothing but TerminateSession or the idle timeout ends it
    assert _described(ssm, session_id, "Active") == ["Disconnected"], _status(cloud, session_id)

    resumed = ssm.resume_session(SessionId=session_id)
    rest = asyncio.run(
        asyncio.wait_for(
            _resume_and_read(
                resumed["StreamUrl"], resumed["TokenValue"], sent, incoming, len(DOWNLOAD) - len(received)
            ),
            60,
        )
    )

    assert received + rest == DOWNLOAD
    ssm.terminate_session(SessionId=session_id)
    assert _status(cloud, session_id) == "Terminated"


def test_a_dropped_data_channel_leaves_the_session_disconnected_until_it_is_terminated(
    aws: Aws, cloud: DevCloud, echo: _Echo
) -> None:
    ssm = aws.client("ssm")
    started = ssm.start_session(Target=aws.launch("abandoned"), DocumentName=FORWARD,
                                Parameters={"portNumber": [echo.port]})  # fmt: skip
    session_id = started["SessionId"]

    asyncio.run(asyncio.wait_for(_talk_then_drop(started["StreamUrl"], started["TokenValue"]), 30))

    _wait(lambda: _status(cloud, session_id) == "Disconnected", "the session Disconnected")
    time.sleep(0.5)  # and it stays so: nothing ends it but TerminateSession or the idle timeout
    assert _described(ssm, session_id, "Active") == ["Disconnected"]
    assert (echo.opened, echo.closed) == (1, 0)  # the agent keeps its connection to the target

    ssm.terminate_session(SessionId=session_id)

    assert _described(ssm, session_id, "History") == ["Terminated"]
    _wait(lambda: echo.closed == 1, "the agent to close its target connection")


def test_resume_session_reconnects_to_the_same_session_with_a_new_token(aws: Aws, cloud: DevCloud, echo: _Echo) -> None:
    ssm = aws.client("ssm")
    started = ssm.start_session(Target=aws.launch("resumed"), DocumentName=FORWARD,
                                Parameters={"portNumber": [echo.port]})  # fmt: skip
    session_id = started["SessionId"]
    sent, expected = asyncio.run(asyncio.wait_for(_talk_then_drop(started["StreamUrl"], started["TokenValue"]), 30))
    _wait(lambda: _status(cloud, session_id) == "Disconnected", "the session Disconnected")

    resumed = ssm.resume_session(SessionId=session_id)

    assert resumed["SessionId"] == session_id and resumed["TokenValue"] != started["TokenValue"]
    assert resumed["StreamUrl"].endswith(f"/v1/data-channel/{session_id}")

    async def with_the_old_token() -> None:
        async with DataChannel.open(started["StreamUrl"], started["TokenValue"], handshake_timeout=5):
            pass

    with pytest.raises(ChannelClosedError, match="invalid token"):
        asyncio.run(with_the_old_token())

    output = asyncio.run(_resume_and_echo(resumed["StreamUrl"], resumed["TokenValue"], sent, expected, b"again\n"))

    assert output == b"again\n"  # the same TCP connection: no second greeting
    assert (echo.opened, echo.closed) == (1, 0)
    # The resumed WebSocket closed too (without the flag): Disconnected again, still active.
    _wait(lambda: _status(cloud, session_id) == "Disconnected", "the session Disconnected again")
    ssm.terminate_session(SessionId=session_id)
    assert _status(cloud, session_id) == "Terminated"


def test_a_resumed_session_is_connected_while_its_new_channel_is_open(aws: Aws, cloud: DevCloud, echo: _Echo) -> None:
    ssm = aws.client("ssm")
    started = ssm.start_session(Target=aws.launch("reconnected"), DocumentName=FORWARD,
                                Parameters={"portNumber": [echo.port]})  # fmt: skip
    session_id = started["SessionId"]
    asyncio.run(asyncio.wait_for(_talk_then_drop(started["StreamUrl"], started["TokenValue"]), 30))
    _wait(lambda: _status(cloud, session_id) == "Disconnected", "the session Disconnected")
    resumed = ssm.resume_session(SessionId=session_id)
    seen: list[str] = []

    async def resume_and_look() -> None:
        websocket = await connect(resumed["StreamUrl"], compression=None)
        await websocket.send(
            OpenDataChannelInput(token_value=resumed["TokenValue"], client_id="c", client_version=OLD_CLIENT).to_json()
        )
        await asyncio.to_thread(_wait, lambda: _status(cloud, session_id) == "Connected", "Connected again")
        seen.append(_status(cloud, session_id))
        await websocket.close()

    asyncio.run(asyncio.wait_for(resume_and_look(), 30))

    assert seen == ["Connected"]
    _wait(lambda: _status(cloud, session_id) == "Disconnected", "Disconnected once more")
    ssm.terminate_session(SessionId=session_id)


def test_a_disconnected_session_ends_after_the_idle_timeout(
    aws: Aws, cloud: DevCloud, echo: _Echo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cloud.streams, "idle_timeout", 2.0)  # read when a session starts
    ssm = aws.client("ssm")
    started = ssm.start_session(Target=aws.launch("idle"), DocumentName=FORWARD,
                                Parameters={"portNumber": [echo.port]})  # fmt: skip
    session_id = started["SessionId"]
    asyncio.run(asyncio.wait_for(_talk_then_drop(started["StreamUrl"], started["TokenValue"]), 30))
    assert _status(cloud, session_id) in ("Connected", "Disconnected")

    _wait(lambda: _status(cloud, session_id) == "Terminated", "the idle timeout to end the session")

    assert _described(ssm, session_id, "History") == ["Terminated"]
    _wait(lambda: echo.closed == 1, "the agent to close its target connection")


def test_the_terminate_session_flag_still_ends_the_session_at_once(aws: Aws, cloud: DevCloud, echo: _Echo) -> None:
    started = aws.client("ssm").start_session(Target=aws.launch("flagged"), DocumentName=FORWARD,
                                              Parameters={"portNumber": [echo.port]})  # fmt: skip

    async def talk() -> None:
        async with DataChannel.open(started["StreamUrl"], started["TokenValue"], client_version=OLD_CLIENT) as ch:
            assert await ch.readexactly(8) == b"hello 1\n"

    asyncio.run(asyncio.wait_for(talk(), 30))

    _wait(lambda: _status(cloud, started["SessionId"]) == "Terminated", "the flag to end the session")
    assert "Disconnected" not in _described(aws.client("ssm"), started["SessionId"], "Active")
