"""The client end of a Session Manager data channel, as an asyncio byte stream.

    async with DataChannel.open(stream_url, token) as channel:
        await channel.write(b"SSH-2.0-...")
        data = await channel.read()        # b"" once the channel has closed
        channel.closed_reason              # why it closed (None while open)

``open`` connects the WebSocket, sends the token in the opening TEXT frame, answers the
agent's handshake and returns once the agent says the handshake is complete: data written
before that would be discarded by the agent. Sessions of the documents Passport uses
(AWS-StartSSHSession, AWS-StartPortForwardingSession) are raw byte streams once open.

By default the client reports version ``CLIENT_VERSION`` (below the plugin's 1.1.70, where
smux multiplexing starts), so the agent keeps one TCP connection per session and carries its
bytes as they are. With ``multiplex=True``, a LocalPortForwarding session with an agent that
can multiplex (``ssmchannel.portmode``) is answered with ``MUX_CLIENT_VERSION`` instead and
``channel.multiplexed`` is True: its bytes are then smux frames (``ssmchannel.smux``), one
stream per forwarded connection (``ssmchannel.forwarding``).

Not supported: KMS-encrypted sessions (the handshake answers KMSEncryption with a failure,
and the agent then ends the session), and reconnecting a dropped WebSocket with
ResumeSession (a dropped WebSocket ends the channel; start a new session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import connect

from ssmchannel.errors import ChannelClosedError, HandshakeError, MessageError, TransportClosed
from ssmchannel.link import LinkConfig, ReliableLink
from ssmchannel.messages import (
    ActionStatus,
    ActionType,
    ChannelClosed,
    ClientMessage,
    Flag,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    MessageType,
    OpenDataChannelInput,
    PayloadType,
    ProcessedClientAction,
    SessionType,
    decode_flag,
    encode_flag,
    version_tuple,
)
from ssmchannel.portmode import MUX_CLIENT_VERSION, multiplexing_applies
from ssmchannel.transport import Transport, WebSocketTransport

logger = logging.getLogger(__name__)

# The newest plugin version without smux (1.1.70 added it): the agent then forwards ports
# over a single stream. See the module docstring.
CLIENT_VERSION = "1.1.61.0"
PING_INTERVAL = 300.0  # the plugin pings every 5 minutes
HANDSHAKE_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0
# Agents before this version do not understand the TerminateSession flag.
TERMINATE_FLAG_AGENT_VERSION = (2, 3, 722, 0)
READ_BUFFER_LIMIT = 4 * 1024 * 1024
# Bytes of input per stream message. The plugin sends at most 1,024; the agent takes any
# size (it reads whole WebSocket messages without a limit, checks no size, and writes each
# payload to the destination at once): see "Compatibility" in ssmchannel/README.md. Larger
# messages carry bulk input with a 64th of the per-message work (digest, ack, frame, syscall).
INPUT_PAYLOAD_SIZE = 64 * 1024
KNOWN_SESSION_TYPES = frozenset(SessionType)


class DataChannel:
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
        payload_size: int = INPUT_PAYLOAD_SIZE,
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
        self._readable = asyncio.Event()
        self._handshake_done = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing: asyncio.Task[None] | None = None

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
        ``additional_headers``); ``options`` to the constructor.
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
        }
        settings.update(connect_options or {})
        try:
            websocket = await connect(stream_url, **settings)
        except (OSError, TimeoutError) as exc:
            raise ChannelClosedError(f"cannot connect to the stream URL: {exc}") from exc
        except Exception as exc:  # websockets' InvalidURI / InvalidHandshake / InvalidStatus...
            raise ChannelClosedError(f"WebSocket refused: {exc}") from exc
        channel = cls(WebSocketTransport(websocket), token=token, **options)
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
            self._tasks.append(asyncio.create_task(self._keepalive(self.ping_interval), name="ssmchannel-ping"))
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
        await asyncio.shield(self._closing)

    async def _close(self, *, terminate: bool, timeout: float) -> None:
        if not self.link.closed and self._handshake_done.is_set():
            deadline = asyncio.get_running_loop().time() + timeout
            await self.link.wait_all_acked(timeout)
            if terminate and self._agent_knows_terminate_flag():
                with contextlib.suppress(ChannelClosedError):
                    await self.send_flag(Flag.TERMINATE_SESSION)
                    remaining = max(0.0, deadline - asyncio.get_running_loop().time())
                    await self.link.wait_all_acked(min(remaining, 1.0))
        self._finish("closed by the client")
        await self.link.close(self._closed_reason or "closed")
        with contextlib.suppress(Exception):
            await self.transport.close("client closed the session")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _agent_knows_terminate_flag(self) -> bool:
        return self.agent_version is not None and version_tuple(self.agent_version) >= TERMINATE_FLAG_AGENT_VERSION

    def _finish(self, reason: str) -> None:
        """Mark the stream ended (first reason wins) and wake readers."""
        if self._closed_reason is None:
            self._closed_reason = reason
        self._readable.set()

    async def _run_link(self) -> None:
        reason = await self.link.run()
        self._finish(reason)
        with contextlib.suppress(Exception):
            await self.transport.close(reason)

    async def _keepalive(self, interval: float) -> None:
        while not self.link.closed:
            await asyncio.sleep(interval)
            try:
                await self.transport.ping()
            except TransportClosed:
                return

    # --- LinkHandler -------------------------------------------------------------------

    def accepts(self, message: ClientMessage) -> bool:
        # A reader that does not keep up: stop acknowledging output; the agent resends later.
        if message.payload_type in (PayloadType.OUTPUT, PayloadType.STDERR):
            return len(self._read_buffer) < self.read_buffer_limit
        return True

    async def deliver(self, message: ClientMessage) -> None:
        kind = message.payload_type
        if kind in (PayloadType.OUTPUT, PayloadType.STDERR):
            if not self._handshake_done.is_set():
                # An agent that skips the handshake starts with output: a legacy shell session.
                self.session_type = self.session_type or SessionType.STANDARD_STREAM
                self._handshake_done.set()
            if message.payload:
                self._read_buffer += message.payload
                self._readable.set()
        elif kind == PayloadType.HANDSHAKE_REQUEST:
            await self._answer_handshake(message)
        elif kind == PayloadType.HANDSHAKE_COMPLETE:
            try:
                complete = HandshakeComplete.from_payload(message.payload)
            except MessageError as exc:
                logger.warning("unreadable HandshakeComplete, carrying on: %s", exc)
                complete = HandshakeComplete()
            self.customer_message = complete.customer_message
            self._handshake_done.set()
        elif kind == PayloadType.FLAG:
            await self._on_flag(message)
        elif kind == PayloadType.EXIT_CODE:
            with contextlib.suppress(ValueError):
                self.exit_code = int(message.payload.decode("ascii", "replace").strip() or "0")
        elif kind == PayloadType.ENC_CHALLENGE_REQUEST:
            # Only sent after a successful KMSEncryption action, which we never report.
            logger.warning("ignoring an encryption challenge: this client does not support KMS encryption")
        else:
            logger.debug("ignoring output payload type %d", kind)

    async def control(self, message: ClientMessage) -> None:
        kind = message.message_type
        if kind == MessageType.CHANNEL_CLOSED:
            try:
                closed = ChannelClosed.from_payload(message.payload)
            except MessageError:
                closed = ChannelClosed(session_id="", output="")
            self.channel_closed = closed
            self._finish(closed.output or "the session ended (channel_closed)")
            await self.link.close(self._closed_reason or "channel_closed")
        elif kind == MessageType.PAUSE_PUBLICATION:
            await self.link.pause()
        elif kind == MessageType.START_PUBLICATION:
            await self.link.resume()
        else:
            logger.debug("ignoring message type %s", kind)

    async def _on_flag(self, message: ClientMessage) -> None:
        try:
            flag = decode_flag(message.payload)
        except MessageError as exc:
            logger.warning("unreadable flag: %s", exc)
            return
        if flag == Flag.CONNECT_TO_PORT_ERROR and self.multiplexed:
            # One stream could not reach the destination (the agent closes that stream); the
            # session and its other streams go on, as in session-manager-plugin.
            self.port_errors += 1
            logger.info("the agent could not connect a stream to the destination port")
        elif flag == Flag.CONNECT_TO_PORT_ERROR:
            self._finish("the agent could not connect to the destination port")
            await self.link.close(self._closed_reason or "connect to port error")
        elif flag == Flag.TERMINATE_SESSION:
            self._finish("the agent terminated the session")
            await self.link.close(self._closed_reason or "terminated")
        else:
            logger.debug("ignoring flag %s", flag)

    async def _answer_handshake(self, message: ClientMessage) -> None:
        try:
            request = HandshakeRequest.from_payload(message.payload)
        except MessageError as exc:
            # Answer anyway, so the agent fails the session with a reason instead of timing out.
            request = HandshakeRequest(agent_version="")
            errors = [f"unreadable HandshakeRequest: {exc}"]
        else:
            errors = []
        self.agent_version = request.agent_version
        processed: list[ProcessedClientAction] = []
        for action in request.requested_client_actions:
            if action.action_type == ActionType.SESSION_TYPE:
                params = action.action_parameters if isinstance(action.action_parameters, dict) else {}
                session_type = params.get("SessionType")
                if session_type in KNOWN_SESSION_TYPES:
                    self.session_type = session_type
                    self.session_properties = params.get("Properties")
                    processed.append(ProcessedClientAction(action.action_type, ActionStatus.SUCCESS))
                    continue
                error = f"Failed to process action SessionType: unknown session type {session_type!r}"
                processed.append(ProcessedClientAction(action.action_type, ActionStatus.FAILED, error=error))
            elif action.action_type == ActionType.KMS_ENCRYPTION:
                error = "Failed to process action KMSEncryption: this client does not support KMS encryption"
                processed.append(ProcessedClientAction(action.action_type, ActionStatus.FAILED, error=error))
            else:
                error = f"Unsupported action {action.action_type}"
                processed.append(ProcessedClientAction(action.action_type, ActionStatus.UNSUPPORTED, error=error))
            errors.append(error)
        client_version = self.client_version
        if self.multiplex and multiplexing_applies(self.session_type, self.session_properties, self.agent_version):
            # The agent decides smux from this version: report it only for what we serve.
            self.multiplexed = True
            client_version = MUX_CLIENT_VERSION
        response = HandshakeResponse(
            client_version=client_version, processed_client_actions=tuple(processed), errors=tuple(errors)
        )
        # From inside the receiver: never wait for window space here.
        await self.link.send_data(PayloadType.HANDSHAKE_RESPONSE, response.to_payload(), wait_for_window=False)
