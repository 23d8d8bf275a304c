"""What the agent sends, as the link hands it over: output, the handshake, flags, channel_closed.

``IncomingHandler`` is the ``LinkHandler`` half of ``DataChannel`` (``ssmchannel.channel.core``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ssmchannel.channel.defaults import KNOWN_SESSION_TYPES
from ssmchannel.errors import MessageError
from ssmchannel.link import ReliableLink
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
    ProcessedClientAction,
    SessionType,
    decode_flag,
)
from ssmchannel.portmode import MUX_CLIENT_VERSION, multiplexing_applies
from ssmchannel.waiting import Event

logger = logging.getLogger(__name__)


class IncomingHandler:
    """The DataChannel's answers to the agent's messages; DataChannel sets these attributes."""

    link: ReliableLink
    client_version: str
    multiplex: bool
    multiplexed: bool
    port_errors: int
    read_buffer_limit: int
    agent_version: str | None
    session_type: str | None
    session_properties: Any
    customer_message: str
    channel_closed: ChannelClosed | None
    exit_code: int | None
    _closed_reason: str | None
    _read_buffer: bytearray
    _readable: Event
    room: Event
    _closing: asyncio.Task[None] | None
    _handshake_done: Event
    _handshake_answered: bool

    def _finish(self, reason: str) -> None:
        """Mark the stream ended (first reason wins) and wake readers."""
        if self._closed_reason is None:
            self._closed_reason = reason
        self._readable.set()
        self.room.set()

    def accepts(self, message: ClientMessage) -> bool:
        # A reader that does not keep up: stop acknowledging output; the agent resends later.
        if message.payload_type in (PayloadType.OUTPUT, PayloadType.STDERR):
            return len(self._read_buffer) < self.read_buffer_limit
        return True

    def output_room(self) -> int | None:
        """For the link's fast path: bytes of output we can take now (<= 0: none); None before the
        handshake completed, where ``deliver`` decides. As ``accepts``: room while under the limit."""
        if not self._handshake_done.is_set():
            return None
        return self.read_buffer_limit - len(self._read_buffer)

    def take_outputs(self, payloads: list[bytes]) -> None:
        """In-order output the link's fast path accepted (``deliver`` for each, at once)."""
        self._read_buffer += b"".join(payloads)
        self._readable.set()
        if len(self._read_buffer) >= self.read_buffer_limit and self._closing is None:
            self.room.clear()  # the link stops reading the WebSocket until read() makes room

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
                if len(self._read_buffer) >= self.read_buffer_limit and self._closing is None:
                    self.room.clear()  # the link stops reading the WebSocket until read() makes room
        elif kind == PayloadType.HANDSHAKE_REQUEST:
            if self._handshake_answered:
                # An agent sends one per session (PerformHandshake, once, in its session plugin).
                # Each answer, sent from inside the receiver and so past the window's limits, may
                # be several times the request's size: a far end repeating them is not answered.
                logger.debug("ignoring a HandshakeRequest after the first")
                return
            self._handshake_answered = True
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
                # Any JSON value may come: a list or an object is unhashable, and no session type.
                if isinstance(session_type, str) and session_type in KNOWN_SESSION_TYPES:
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
        # From inside the receiver: never wait for window space here (one answer per session,
        # so the window goes past its limits by one message at most).
        await self.link.send_data(PayloadType.HANDSHAKE_RESPONSE, response.to_payload(), wait_for_window=False)
