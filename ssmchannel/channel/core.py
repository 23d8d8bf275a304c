"""DataChannel: opening, reading, writing and closing the byte stream to the agent."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from ssmchannel.channel.defaults import (
    CLIENT_VERSION,
    CLOSE_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    MAX_MESSAGE_SIZE,
    PING_INTERVAL,
    READ_BUFFER_LIMIT,
    TERMINATE_FLAG_AGENT_VERSION,
    default_payload_size,
)
from ssmchannel.channel.incoming import IncomingHandler
from ssmchannel.errors import ChannelClosedError, HandshakeError, TransportClosed
from ssmchannel.link import ReliableLink
from ssmchannel.link_terms import LinkConfig
from ssmchannel.messages import (
    ChannelClosed,
    Flag,
    MessageType,
    OpenDataChannelInput,
    PayloadType,
    encode_flag,
    version_tuple,
)
from ssmchannel.redirects import connect_within_origin
from ssmchannel.transport import Transport, WebSocketTransport
from ssmchannel.waiting import Event, cancel_and_wait


class DataChannel(IncomingHandler):
    """A handshaken, reliable, ordered byte stream to the agent of one Session Manager session."""

    def __init__(
        self,
        transport: Transport,
        *,
        token: str,
        client_id: str | None = None,
        client_version: str = CLIENT_VERSION,
        config: LinkConfig | None = None,
        ping_interval: float | None = PING_INTERVAL,
        read_buffer_limit: int = READ_BUFFER_LIMIT,
        multiplex: bool = False,
        payload_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.token = token
        self.client_id = client_id or str(uuid.uuid4())
        self.client_version = client_version
        self.multiplex = multiplex  # offer smux when the handshake allows it (port forwarding)
        self.multiplexed = False  # the handshake chose smux: the bytes are smux frames
        self.port_errors = 0  # multiplexed: streams the agent could not connect
        self.ping_interval = ping_interval
        self.read_buffer_limit = read_buffer_limit
        if payload_size is None:
            payload_size = default_payload_size()
        if payload_size < 1:
            raise ValueError("payload_size must be positive")
        self.payload_size = payload_size
        self.link = ReliableLink(
            transport,
            self,
            outgoing_type=MessageType.INPUT_STREAM_DATA,
            incoming_type=MessageType.OUTPUT_STREAM_DATA,
            config=config,
            clock=clock,
        )
        # What the handshake told us.
        self.agent_version: str | None = None
        self.session_type: str | None = None
        self.session_properties: Any = None
        self.customer_message: str = ""
        # How it ended.
        self.channel_closed: ChannelClosed | None = None
        self.exit_code: int | None = None
        self._closed_reason: str | None = None
        self._read_buffer = bytearray()
        self._readable = Event()
        # Set while the read buffer is under its limit: the link reads the WebSocket only then.
        self.room = Event()
        self.room.set()
        self._handshake_done = Event()
        self._handshake_answered = False  # only the first HandshakeRequest is answered
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing: asyncio.Task[None] | None = None
        # The keepalive: a timer, and a task only while a ping is being sent (not a task asleep
        # for five minutes in every open channel).
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pinging: asyncio.Task[None] | None = None

    # --- opening ---------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        stream_url: str,
        token: str,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        terminate_on_exit: bool = True,
        connect_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncIterator[DataChannel]:
        """Connect, handshake, yield the channel; on exit drain, terminate and close it.

        ``connect_options`` go to ``websockets.asyncio.client.connect`` (e.g. ``proxy``,
        ``additional_headers``); ``options`` to the constructor. A redirect is followed only within
        the stream URL's origin (``ssmchannel.redirects``): the token goes wherever it leads.
        """
        channel = await cls.connect(
            stream_url, token, handshake_timeout=handshake_timeout, connect_options=connect_options, **options
        )
        try:
            yield channel
        finally:
            await channel.close(terminate=terminate_on_exit)

    @classmethod
    async def connect(
        cls,
        stream_url: str,
        token: str,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        connect_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> DataChannel:
        """Like ``open`` without the context manager: the caller must ``close()`` the channel."""
        settings: dict[str, Any] = {
            # Our own keepalive (every 5 minutes) replaces websockets' 20-second pings.
            "ping_interval": None,
            "ping_timeout": None,
            # Payloads are SSH ciphertext or similar: compressing them is wasted work.
            "compression": None,
            # Not websockets' 1 MiB: nothing larger is needed (see MAX_MESSAGE_SIZE).
            "max_size": MAX_MESSAGE_SIZE,
        }
        settings.update(connect_options or {})
        try:
            websocket = await connect_within_origin(stream_url, **settings)
        except (OSError, TimeoutError) as exc:
            raise ChannelClosedError(f"cannot connect to the stream URL: {exc}") from exc
        except Exception as exc:  # websockets' InvalidURI / InvalidHandshake / InvalidStatus...
            raise ChannelClosedError(f"WebSocket refused: {exc}") from exc
        transport = WebSocketTransport(websocket)
        transport.enable_fast_path()  # before the agent can send anything (see FrameTap.install)
        channel = cls(transport, token=token, **options)
        try:
            await channel.start(handshake_timeout=handshake_timeout)
        except BaseException:
            await channel.close(terminate=False)
            raise
        return channel

    async def start(self, *, handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """Send the token, start the loops and wait until the agent completes the handshake."""
        opening = OpenDataChannelInput(
            token_value=self.token, client_id=self.client_id, client_version=self.client_version
        )
        try:
            await self.transport.send(opening.to_json())
        except TransportClosed as exc:
            self._closed_reason = exc.reason
            raise ChannelClosedError(exc.reason) from exc
        self._tasks.append(asyncio.create_task(self._run_link(), name="ssmchannel-link"))
        if self.ping_interval:
            self._ping_timer = asyncio.get_running_loop().call_later(self.ping_interval, self._ping_due)
        handshake = asyncio.ensure_future(self._handshake_done.wait())
        closed = asyncio.ensure_future(self.link.wait_closed())
        try:
            await asyncio.wait({handshake, closed}, timeout=handshake_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            handshake.cancel()
            closed.cancel()
        if self._handshake_done.is_set():
            return
        if self.link.closed:
            raise ChannelClosedError(self.closed_reason or self.link.closed_reason or "closed during the handshake")
        raise HandshakeError(f"the agent did not complete the handshake within {handshake_timeout:g} s")

    # --- the byte stream -------------------------------------------------------------

    @property
    def closed_reason(self) -> str | None:
        """None while the channel is open; afterwards why it closed (agent output, flag, error)."""
        return self._closed_reason

    def at_eof(self) -> bool:
        return self._closed_reason is not None and not self._read_buffer

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered bytes if n < 0) as soon as any arrive; b"" at the end."""
        while not self._read_buffer and self._closed_reason is None:
            self._readable.clear()
            await self._readable.wait()
        if n < 0 or n >= len(self._read_buffer):
            data = bytes(self._read_buffer)
            self._read_buffer.clear()
        else:
            data = bytes(self._read_buffer[:n])
            del self._read_buffer[:n]
        if len(self._read_buffer) < self.read_buffer_limit:
            self.room.set()
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; raises asyncio.IncompleteReadError if the channel ends first."""
        chunks = bytearray()
        while len(chunks) < n:
            data = await self.read(n - len(chunks))
            if not data:
                raise asyncio.IncompleteReadError(bytes(chunks), n)
            chunks += data
        return bytes(chunks)

    async def write(self, data: bytes) -> None:
        """Send bytes, in messages of at most ``payload_size`` bytes; waits while too much is unacknowledged."""
        if self._closed_reason is not None:
            raise ChannelClosedError(self._closed_reason)
        size = self.payload_size
        view = memoryview(data)
        for start in range(0, len(view), size):
            await self.link.send_data(PayloadType.OUTPUT, bytes(view[start : start + size]))

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until the agent has acknowledged everything written; False on timeout or close."""
        return await self.link.wait_all_acked(timeout)

    async def send_flag(self, flag: Flag) -> None:
        """E.g. DISCONNECT_TO_PORT when a forwarded local connection closes."""
        await self.link.send_data(PayloadType.FLAG, encode_flag(flag))

    async def send_size(self, cols: int, rows: int) -> None:
        """Terminal size, for shell sessions (ignored by port sessions)."""
        await self.link.send_data(PayloadType.SIZE, f'{{"cols":{int(cols)},"rows":{int(rows)}}}'.encode())

    # --- closing ---------------------------------------------------------------------

    async def close(self, *, terminate: bool = True, timeout: float = CLOSE_TIMEOUT) -> None:
        """Deliver what was written, tell the agent to end the session, close the WebSocket.

        ``terminate`` sends the TerminateSession flag (when the agent knows it); the caller
        should still call the TerminateSession API, as the plugin does, to end the session
        on the service's side. Safe to call more than once and from several tasks.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(terminate=terminate, timeout=timeout))
            # Closing reads on whatever is unread: the acks for what we wrote must get through.
            self.room.set()
        await asyncio.shield(self._closing)

    async def _close(self, *, terminate: bool, timeout: float) -> None:
        if not self.link.closed and self._handshake_done.is_set():
            deadline = asyncio.get_running_loop().time() + timeout
            await self.link.wait_all_acked(timeout)
            if terminate and self._agent_knows_terminate_flag():
                flag = encode_flag(Flag.TERMINATE_SESSION)
                remaining = max(0.0, deadline - asyncio.get_running_loop().time())
                with contextlib.suppress(ChannelClosedError, TimeoutError):
                    # Past a full window if need be: an agent that acknowledges nothing (its
                    # destination not reading) must not hold the close up for ever.
                    await asyncio.wait_for(
                        self.link.send_data(PayloadType.FLAG, flag, wait_for_window=False), max(remaining, 1.0)
                    )
                    remaining = max(0.0, deadline - asyncio.get_running_loop().time())
                    await self.link.wait_all_acked(min(remaining, 1.0))
        self._finish("closed by the client")
        self._stop_keepalive()
        await self.link.close(self._closed_reason or "closed")
        with contextlib.suppress(Exception):
            await self.transport.close("client closed the session")
        await cancel_and_wait(*self._tasks)

    def _agent_knows_terminate_flag(self) -> bool:
        return self.agent_version is not None and version_tuple(self.agent_version) >= TERMINATE_FLAG_AGENT_VERSION

    async def _run_link(self) -> None:
        reason = "the data channel stopped"
        try:
            reason = await self.link.run()
        finally:
            # However the link ended (even by an error it did not expect): readers are woken.
            self._finish(self.link.closed_reason or reason)
        self._stop_keepalive()
        with contextlib.suppress(Exception):
            await self.transport.close(reason)

    def _ping_due(self) -> None:
        self._ping_timer = None
        if self.link.closed or self._closing is not None:
            return
        self._pinging = asyncio.ensure_future(self._ping())

    async def _ping(self) -> None:
        try:
            await self.transport.ping()
        except TransportClosed:
            return
        finally:
            self._pinging = None
        if self.ping_interval and not self.link.closed and self._closing is None:
            self._ping_timer = asyncio.get_running_loop().call_later(self.ping_interval, self._ping_due)

    def _stop_keepalive(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if self._pinging is not None:
            self._pinging.cancel()
