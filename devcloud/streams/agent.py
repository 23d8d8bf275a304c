"""The agent's side of one data channel, after the token was checked: handshake, then forwarding to the target."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import secrets
import time
from typing import Any

from devcloud.streams.smux import KEEPALIVE, SmuxServer, smux_keepalive
from devcloud.streams.target import MIN_AGENT_VERSION, StreamTarget, check_remote_host
from devcloud.streams.targetside import (
    BASIC,
    MUX,
    MUX_AGENT_VERSION_AFTER,
    MUX_CLIENT_VERSION,
    TargetConnection,
    TargetSide,
    port_mode,
)
from ssmchannel.errors import ChannelClosedError, MessageError
from ssmchannel.link import ReliableLink
from ssmchannel.link_terms import LinkConfig
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
    PayloadType,
    RequestedClientAction,
    SessionType,
    decode_flag,
    version_tuple,
)
from ssmchannel.transport import Transport
from ssmchannel.waiting import cancel_and_wait, raise_failure

logger = logging.getLogger(__name__)

# The agent's handshake wait (datachannel.go handshakeTimeout, 15 s).
HANDSHAKE_TIMEOUT = 15.0
# The agent's link: it holds up to 100,000 messages ahead of the expected one (config.go
# IncomingMessageBufferCapacity), with no byte limit, and acknowledges each without asking its
# plugin (datachannel.go handleStreamDataMessage), unless blocked writing to the target (our
# ``room`` clear). The plugin's side, ssmchannel's client, keeps LinkConfig's defaults.
AGENT_LINK_CONFIG = LinkConfig(incoming_capacity=100_000, incoming_capacity_bytes=None, ask_handler_ahead=False)
# The KMS action's random challenge: 16 random bytes, base64 (crypto/blockcipher.go randomChallengeSize).
CHALLENGE_SIZE = 16


class AgentSession(TargetSide):
    """One data channel, agent side, after the token was checked: handshake, then forwarding."""

    def __init__(
        self,
        transport: Transport,
        target: StreamTarget,
        *,
        session_id: str,
        config: LinkConfig | None = None,
        kms_key_id: str | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        close_timeout: float = 5.0,
        # (speed, #14) Above the client's window (LinkConfig.max_unacked_bytes, ~2.3 MB): the
        # real agent never refuses data for being full (it blocks in conn.Write), so neither
        # should this queue for a client that keeps to its window.
        queue_limit: int = 4 * 1024 * 1024,
        mux_keepalive: tuple[float, float] = KEEPALIVE,
        idle_timeout: float | None = None,
    ) -> None:
        self.transport = transport
        self.target = target
        self.session_id = session_id
        self.kms_key_id = kms_key_id
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.queue_limit = queue_limit
        self.mux_keepalive = mux_keepalive  # smux's NOP interval and silence timeout, when on
        # The session ends after this long without input from the client, connected or not
        # (Session Manager's idle session timeout); None: never.
        self.idle_timeout = idle_timeout
        self._last_input = time.monotonic()
        self.client_connected = True  # False while the client's WebSocket is gone (Disconnected)
        self.link = ReliableLink(
            transport,
            self,
            outgoing_type=MessageType.OUTPUT_STREAM_DATA,
            incoming_type=MessageType.INPUT_STREAM_DATA,
            config=config or AGENT_LINK_CONFIG,
            mark_first_syn=True,
        )
        self.handshake_response: HandshakeResponse | None = None
        self.client_version: str | None = None
        self.end_output: str | None = None  # what channel_closed said (None: not sent)
        self._responded = asyncio.Event()
        self._ready = False  # handshake complete and target connected: client data is welcome
        self._to_target: asyncio.Queue[bytes] = asyncio.Queue()
        self._queued = 0
        self.room = asyncio.Event()  # clear while the queue is full: the link stops reading (ReliableLink)
        self.room.set()
        self._connection: TargetConnection | None = None
        self.remote_addresses: tuple[str, ...] | None = None  # the checked host's addresses (check_remote_host)
        self.mode: str | None = None  # BASIC or MUX once the handshake is done
        self._mux: SmuxServer | None = None
        self._end = asyncio.Event()
        self._end_reason = ""
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> str:
        """Serve the session until it ends; returns the channel_closed output (or link's reason)."""
        link_task = asyncio.create_task(self.link.run())
        try:
            await self._serve()
        except ChannelClosedError:
            pass
        finally:
            await self._shutdown()
            await cancel_and_wait(link_task)
        raise_failure(link_task)
        return self.end_output if self.end_output is not None else (self.link.closed_reason or "closed")

    async def _serve(self) -> None:
        if version_tuple(self.target.agent_version) < version_tuple(MIN_AGENT_VERSION):
            # An agent this old has no port plugin: Passport refuses such instances too.
            await self._end_session(
                f"SSM Agent {self.target.agent_version or 'unknown'} on {self.target.destination_id or 'the target'}"
                f" does not support port sessions; {MIN_AGENT_VERSION} or newer is needed."
            )
            return
        started = time.monotonic()
        actions = [
            RequestedClientAction(
                ActionType.SESSION_TYPE,
                {"SessionType": SessionType.PORT.value, "Properties": self.target.session_properties()},
            )
        ]
        if self.kms_key_id:
            challenge = base64.b64encode(secrets.token_bytes(CHALLENGE_SIZE)).decode()
            actions.append(
                RequestedClientAction(ActionType.KMS_ENCRYPTION, {"KMSKeyId": self.kms_key_id, "Challenge": challenge})
            )
        request = HandshakeRequest(agent_version=self.target.agent_version, requested_client_actions=tuple(actions))
        await self.link.send_data(PayloadType.HANDSHAKE_REQUEST, request.to_payload())
        if not await self._until(self._responded, self.handshake_timeout):
            if not self.link.closed:
                await self._end_session(
                    "Handshake timed out. Please ensure that you have the latest version of the session manager plugin."
                )
            return
        assert self.handshake_response is not None
        failures = [
            f"{a.action_type} failed on client with status {a.action_status} error: {a.error}"
            for a in self.handshake_response.processed_client_actions
            if a.action_status != ActionStatus.SUCCESS
        ]
        if failures:
            await self._end_session("; ".join(failures))
            return
        elapsed_ns = int((time.monotonic() - started) * 1e9)
        await self.link.send_data(PayloadType.HANDSHAKE_COMPLETE, HandshakeComplete(elapsed_ns).to_payload())
        # The port plugin checks its parameters before it dials, in either mode (port.go validateParameters).
        remote = await check_remote_host(self.target)
        if remote.refusal is not None:
            await self._end_session(remote.refusal)
            return
        self.remote_addresses = remote.addresses
        self.mode = port_mode(self.target, self.client_version or "")
        if self.mode == MUX:
            # Nothing is dialled until the client opens a stream (port_mux.go).
            keepalive = smux_keepalive(
                version_tuple(self.target.agent_version), version_tuple(self.client_version or "")
            )
            self._mux = SmuxServer(
                self._send_output,
                self._dial,
                self._dial_failed,
                keepalive=self.mux_keepalive if keepalive else None,
                on_dead=lambda: self._request_end("smux keepalive timed out: the client sent nothing"),
            )
        else:
            try:
                await self._connect()
            except OSError as exc:
                await self._end_session(f"Unable to connect to specified port: {exc}")
                return
        self._ready = True
        self._spawn(self._write_to_target())
        if self.idle_timeout is not None:
            self._spawn(self._watch_idle(self.idle_timeout))
        if self.target.terminated is not None:
            self._spawn(self._watch_terminated(self.target.terminated))
        if await self._until(self._end, None):
            await self._end_session(self._end_reason)

    async def _until(self, event: asyncio.Event, timeout: float | None) -> bool:
        """Wait for ``event``; False if the link closed or the time ran out first."""
        waiting = asyncio.ensure_future(event.wait())
        closed = asyncio.ensure_future(self.link.wait_closed())
        try:
            await asyncio.wait({waiting, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            closed.cancel()
        return event.is_set() and not self.link.closed

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _request_end(self, output: str) -> None:
        if not self._end.is_set():
            self._end_reason = output
            self._end.set()

    async def _end_session(self, output: str) -> None:
        """Deliver what is in flight, then channel_closed, then close the WebSocket."""
        if self.end_output is not None or self.link.closed:
            return
        self.end_output = output
        if self.client_connected:
            await self.link.wait_all_acked(self.close_timeout)
        closed = ChannelClosed(
            session_id=self.session_id,
            output=output,
            created_date=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            destination_id=self.target.destination_id,
        )
        with contextlib.suppress(ChannelClosedError):
            await self.link.send_control(MessageType.CHANNEL_CLOSED, closed.to_payload())
        await self.link.close("session ended")

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._connection is not None:
            self._connection.drop()
            self._connection = None
        if self._mux is not None:
            await self._mux.close()
        await self.link.close("session ended")
        with contextlib.suppress(Exception):
            await self.transport.close("session ended")

    # --- the client's connection -----------------------------------------------------

    def client_detached(self) -> None:
        """The client's WebSocket dropped: keep everything, send nothing until it is back."""
        self.client_connected = False
        # As AWS's agent, whose resend loop never gives up: kept until TerminateSession or the idle timeout.
        self.link.hold_until_resumed()

    def client_attached(self) -> None:
        """A resumed client is connected: send what waited, in order."""
        self.client_connected = True
        self._spawn(self.link.resume())

    async def _watch_idle(self, timeout: float) -> None:
        while (idle := time.monotonic() - self._last_input) < timeout:
            await asyncio.sleep(min(timeout - idle, 1.0))
        self._request_end(f"Session {self.session_id} ended: no input for {timeout:g} seconds (idle session timeout).")

    # --- LinkHandler -------------------------------------------------------------------

    def accepts(self, message: ClientMessage) -> bool:
        if message.payload_type == PayloadType.OUTPUT:
            # Like the agent's "handler not ready": refused data comes back by retransmission.
            return self._ready and self._queued < self.queue_limit
        return True

    def output_room(self) -> int | None:
        """For the link's fast path: bytes of input we can queue now (<= 0: none, as ``accepts``)."""
        return self.queue_limit - self._queued if self._ready else 0

    def take_outputs(self, payloads: list[bytes]) -> None:
        """In-order input the link's fast path accepted (``deliver`` for each, at once)."""
        self._last_input = time.monotonic()
        data = b"".join(payloads)
        self._queued += len(data)
        self._to_target.put_nowait(data)
        if self._queued >= self.queue_limit:
            self.room.clear()

    async def deliver(self, message: ClientMessage) -> None:
        self._last_input = time.monotonic()
        kind = message.payload_type
        if kind == PayloadType.OUTPUT:
            if message.payload:
                self._queued += len(message.payload)
                self._to_target.put_nowait(message.payload)
                if self._queued >= self.queue_limit:
                    self.room.clear()
        elif kind == PayloadType.HANDSHAKE_RESPONSE:
            try:
                response = HandshakeResponse.from_payload(message.payload)
            except MessageError as exc:
                response = HandshakeResponse(
                    client_version="",
                    processed_client_actions=(),
                    errors=(f"unreadable HandshakeResponse: {exc}",),
                )
            if self.handshake_response is None:
                self.handshake_response = response
                self.client_version = response.client_version
                self._responded.set()
        elif kind == PayloadType.FLAG:
            try:
                flag = decode_flag(message.payload)
            except MessageError:
                return
            if flag == Flag.TERMINATE_SESSION:
                self._request_end("")
            elif flag == Flag.DISCONNECT_TO_PORT and self.mode == BASIC:
                # (In smux mode the client closes streams with FIN; port_mux.go ignores this flag.)
                if self._connection is not None:
                    self._connection.drop()
                    self._connection = None
                if not self.target.port_forwarding:
                    self._request_end("")
        # SIZE, encryption challenge responses...: nothing to do for a port session.

    async def control(self, message: ClientMessage) -> None:
        logger.debug("agent ignores %s from the client", message.message_type)


__all__ = ["BASIC", "MUX", "MUX_AGENT_VERSION_AFTER", "MUX_CLIENT_VERSION", "AgentSession", "port_mode"]
