"""devcloud's smux server holds back a client whose destination does not read, as the real agent does.

The agent's smux (xtaci/smux v1.5.15) reads no further frame while its streams hold
MaxReceiveBuffer (4 MiB) that their destinations have not read: the agent's write to its smux
connection blocks, it stops acknowledging input_stream_data, and the client's writes wait for
window space. devcloud used to queue every PSH frame without bound and acknowledge at once
(64 MiB in 0.3 s for a destination that read nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from devcloud.streams import StreamTarget
from devcloud.streams.smux import FIN, MAX_RECEIVE_BUFFER, PSH, SYN, Frame, SmuxServer
from ssmchannel import DataChannel
from tests.devcloud.test_port_modes import FORWARD, MODERN_CLIENT, MiniSmux
from tests.ssmchannel.aio import async_test

FRAME = 32768
# A pattern whose order shows, 16 MiB: four times what the agent's smux holds unread.
PATTERN = (bytes(range(251)) * (16 * 1024 * 1024 // 251 + 1))[: 16 * 1024 * 1024]


class _Sink:
    """A destination that accepts and does not read until ``start_reading``; then it keeps all it reads."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # inherited by what it accepts
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port: int = self.listener.getsockname()[1]
        self.received = bytearray()
        self.reading = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        self.reading.wait()
        with conn, contextlib.suppress(OSError):  # closed by the test
            while data := conn.recv(65536):
                self.received += data

    def start_reading(self) -> None:
        self.reading.set()

    def close(self) -> None:
        self.reading.set()
        self.listener.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def sink() -> Iterator[_Sink]:
    server = _Sink()
    yield server
    server.close()


async def _push(mux: MiniSmux, stream_id: int, data: bytes, pushed: list[int]) -> None:
    for start in range(0, len(data), FRAME):
        await mux.send(stream_id, data[start : start + FRAME])
        pushed[0] = start + FRAME


def _acknowledged(channel: DataChannel, pushed: int) -> int:
    """Of the stream bytes pushed, roughly how many the agent acknowledged (smux headers aside)."""
    return pushed - channel.link.window.bytes


@async_test
async def test_a_stream_whose_destination_does_not_read_holds_the_clients_writes_back(
    serve_target: Callable[..., str], sink: _Sink
) -> None:
    stream_url = serve_target(StreamTarget(token="tok", port=sink.port, document_name=FORWARD))
    async with DataChannel.open(stream_url, "tok", client_version=MODERN_CLIENT) as channel:
        mux = MiniSmux(channel)
        stream_id = await mux.open()
        pushed = [0]
        push = asyncio.ensure_future(_push(mux, stream_id, PATTERN * 4, pushed))
        await asyncio.wait({push}, timeout=3)

        assert not push.done(), "64 MiB written without waiting, for a destination that read nothing"
        # What the agent took: its smux buffer, its queue towards smux (the same 4 MiB again) and
        # the sockets' buffers to the destination; nothing like the 64 MiB written.
        assert _acknowledged(channel, pushed[0]) < 4 * MAX_RECEIVE_BUFFER
        assert not await channel.drain(0.5)

        sink.start_reading()  # the destination reads: the rest goes through, in order
        await asyncio.wait_for(push, 60)
        assert await channel.drain(30)
        # Acknowledged is taken by the agent, not yet written to the destination: the session stays
        # open until the destination has it all (ending it first ends the agent's streams with what
        # they still hold; the test was flaky on a loaded machine that way).
        deadline = time.monotonic() + 30
        while len(sink.received) < 4 * len(PATTERN) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await mux.stop()
    assert sink.received == PATTERN * 4


@async_test
async def test_a_session_held_back_by_its_destination_is_not_ended_by_the_smux_keepalive(
    serve_target: Callable[..., str], sink: _Sink
) -> None:
    """smux's keepalive does not end a session while its frames wait for room (the silence is the agent's)."""
    target = StreamTarget(token="tok", port=sink.port, document_name=FORWARD, agent_version="3.1.1418.0")
    # A timeout above the client's longest retransmission timeout (1 s): once the destination reads
    # again, frames the agent refused while it was full come back only when the client resends them.
    stream_url = serve_target(target, mux_keepalive=(0.2, 1.5))
    async with DataChannel.open(stream_url, "tok", client_version=MODERN_CLIENT) as channel:
        mux = MiniSmux(channel)
        stream_id = await mux.open()
        push = asyncio.ensure_future(_push(mux, stream_id, PATTERN, [0]))
        await asyncio.sleep(4.0)  # over two keepalive timeouts, the client's writes waiting all along

        assert channel.closed_reason is None and not push.done()
        sink.start_reading()
        await asyncio.wait_for(push, 60)
        assert await channel.drain(30)
        await mux.stop()


class _Output:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.frames.append(data)


async def _no_flag(error: OSError) -> None:
    return None


@async_test
async def test_feeding_waits_once_the_receive_buffer_is_full_and_a_stream_gone_gives_its_room_back(sink: _Sink) -> None:
    async def dial() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", sink.port)

    output = _Output()
    server = SmuxServer(output.send, dial, _no_flag, receive_buffer=256 * 1024)
    data = Frame(PSH, 3, b"\x00\x1b[2J\n" * 4096).encode()  # 28 KiB per frame, control bytes and all
    await server.feed(Frame(SYN, 3).encode())
    for _ in range(8):
        await asyncio.wait_for(server.feed(data), 1)  # 224 KiB: under the buffer, none of it waits
    await asyncio.sleep(0.2)
    # The destination reads nothing; what the connection's buffers do not take is held unread.
    feeding = asyncio.ensure_future(server.feed(data * 256))
    await asyncio.sleep(0.5)
    assert not feeding.done()
    held = server.unread
    assert 0 < held <= 256 * 1024 + len(data)  # at most one frame past the buffer, as smux's bucket

    for conn in sink.conns:
        conn.close()  # the destination goes: its stream ends, and the data it held is dropped

    await asyncio.wait_for(feeding, 5)  # the rest, for a stream that is gone, is dropped too
    assert server.unread == 0
    await server.feed(Frame(FIN, 3).encode())
    await server.close()
    assert output.frames[-1] == Frame(FIN, 3).encode()
