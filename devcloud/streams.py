"""The agent's side of the Session Manager data channel: where devcloud's StreamUrls lead.

``StreamServer`` is a WebSocket server (its own thread and event loop, so synchronous code
such as ``DevCloud`` or a test can start and stop it) serving ``/v1/data-channel/<SessionId>``.
Per connection it plays what AWS splits between the Message Gateway Service and the SSM
agent on the instance:

1. the first frame must be the client's TEXT JSON with the session's TokenValue
   (``resolve_session(session_id)`` says which token, target and document; None or a wrong
   token closes the WebSocket with code 1008 and the reason);
2. it sends HandshakeRequest (SessionType "Port" with the document's properties, and
   KMSEncryption if configured), waits for the HandshakeResponse, sends HandshakeComplete;
3. it connects to the target (127.0.0.1:port: a local host's sshd, or the forwarded port)
   and forwards bytes both ways, numbering, acknowledging and resending like the agent;
4. it ends the session with channel_closed when the target closes the TCP connection, the
   client sends the TerminateSession flag, or the session is terminated through the API.

Fault injection (``Faults``, seeded, per session) drops, duplicates, reorders and delays
the agent's outgoing stream messages and acknowledgements, and drops some incoming ones, so
the client's recovery is exercised. The unsequenced channel_closed is never faulted: the
protocol has no way to recover it.

The reliable-delivery machinery is the client's own (``ssmchannel.link``); the client's
tests check it against hand-built frames, and these two ends check each other under faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from ssmchannel.errors import ChannelClosedError, MessageError, TransportClosed
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
    RequestedClientAction,
    SessionType,
    decode_flag,
    peek_message_type,
)
from ssmchannel.transport import Frame, Transport, WebSocketTransport

logger = logging.getLogger(__name__)

DEFAULT_AGENT_VERSION = "3.3.1142.0"
LOCAL_PORT_FORWARDING = "LocalPortForwarding"
PATH_PATTERN = re.compile(r"/v1/data-channel/(?P<session_id>[A-Za-z0-9._@+=,-]+)")
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011

SSH_DOCUMENT = "AWS-StartSSHSession"
PORT_FORWARDING_DOCUMENTS = frozenset({"AWS-StartPortForwardingSession", "AWS-StartPortForwardingSessionToRemoteHost"})

# Stream messages and acks are what fault injection may touch; they are the ones the
# protocol recovers (by resending, or by the next ack making up for a lost one).
_FAULTABLE = frozenset({MessageType.INPUT_STREAM_DATA, MessageType.OUTPUT_STREAM_DATA, MessageType.ACKNOWLEDGE})
# Held messages are let go after this long without new traffic, so the end of a burst is
# reordered and delayed like the rest instead of waiting for the sender's retransmission.
_REORDER_FLUSH = 0.02


@dataclass(frozen=True)
class StreamTarget:
    """What the stream server needs to know about one session."""

    token: str
    port: int | None  # None: nothing to connect to (the session ends with an error)
    host: str = "127.0.0.1"
    document_name: str = SSH_DOCUMENT
    # The document's session properties as the agent sends them in the handshake;
    # derived from the document and port when empty.
    properties: Mapping[str, Any] = field(default_factory=dict)
    agent_version: str = DEFAULT_AGENT_VERSION
    destination_id: str = ""  # the instance id, echoed in channel_closed
    # Set when the session is terminated through the API: the channel then closes.
    terminated: threading.Event | None = None

    def session_properties(self) -> dict[str, Any]:
        if self.properties:
            return dict(self.properties)
        properties: dict[str, Any] = {"portNumber": str(self.port or "")}
        if self.document_name in PORT_FORWARDING_DOCUMENTS:
            properties["type"] = LOCAL_PORT_FORWARDING
        return properties

    @property
    def port_forwarding(self) -> bool:
        return self.session_properties().get("type") == LOCAL_PORT_FORWARDING


@dataclass(frozen=True)
class Faults:
    """What goes wrong on the agent's side of the wire; every probability is 0..1."""

    loss: float = 0.0  # outgoing stream messages and acks dropped
    duplication: float = 0.0  # ... sent twice
    reorder_window: int = 0  # hold up to this many and let them go in random order
    delay: float = 0.0  # extra latency per message, uniform in [0, delay] seconds
    incoming_loss: float = 0.0  # incoming stream messages and acks dropped before processing
    seed: int = 0

    @property
    def active(self) -> bool:
        return bool(self.loss or self.duplication or self.reorder_window > 1 or self.delay or self.incoming_loss)


class FaultyTransport:
    """A Transport that misbehaves as ``faults`` says, with a seeded random generator."""

    def __init__(self, inner: Transport, faults: Faults, rng: random.Random) -> None:
        self.inner = inner
        self.faults = faults
        self.rng = rng
        self.stats: Counter[str] = Counter()
        self._held: list[bytes] = []
        self._flush: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, str) or peek_message_type(frame) not in _FAULTABLE:
            await self.inner.send(frame)
            return
        if self.rng.random() < self.faults.loss:
            self.stats["dropped"] += 1
            return
        copies = 2 if self.rng.random() < self.faults.duplication else 1
        self.stats["duplicated"] += copies - 1
        for _ in range(copies):
            if self.faults.reorder_window > 1:
                self._held.append(frame)
                while len(self._held) >= self.faults.reorder_window:
                    self.stats["reordered"] += 1
                    await self._release(self._held.pop(self.rng.randrange(len(self._held))))
                if self._held and self._flush is None:
                    self._flush = asyncio.create_task(self._flush_later())
            else:
                await self._release(frame)

    async def _release(self, frame: bytes) -> None:
        delay = self.rng.uniform(0, self.faults.delay) if self.faults.delay else 0.0
        if delay <= 0:
            with contextlib.suppress(TransportClosed):
                await self.inner.send(frame)
            return
        self.stats["delayed"] += 1
        task = asyncio.create_task(self._send_later(frame, delay))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_later(self, frame: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        # A lost race with close() is just one more lost message.
        with contextlib.suppress(TransportClosed):
            await self.inner.send(frame)

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(_REORDER_FLUSH)
            held, self._held = self._held, []
            self.rng.shuffle(held)
            for frame in held:
                await self._release(frame)
        finally:
            self._flush = None

    async def recv(self) -> Frame:
        while True:
            frame = await self.inner.recv()
            if (
                isinstance(frame, bytes)
                and self.faults.incoming_loss
                and peek_message_type(frame) in _FAULTABLE
                and self.rng.random() < self.faults.incoming_loss
            ):
                self.stats["incoming_dropped"] += 1
                continue
            return frame

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self, reason: str = "") -> None:
        for task in [*self._background, *([self._flush] if self._flush else [])]:
            task.cancel()
        await self.inner.close(reason)


class AgentSession:
    """One data channel, agent side, after the token was checked: handshake, then forwarding."""

    def __init__(
        self,
        transport: Transport,
        target: StreamTarget,
        *,
        session_id: str,
        config: LinkConfig | None = None,
        kms_key_id: str | None = None,
        handshake_timeout: float = 30.0,
        close_timeout: float = 5.0,
        queue_limit: int = 1024 * 1024,
    ) -> None:
        self.transport = transport
        self.target = target
        self.session_id = session_id
        self.kms_key_id = kms_key_id
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.queue_limit = queue_limit
        self.link = ReliableLink(
            transport,
            self,
            outgoing_type=MessageType.OUTPUT_STREAM_DATA,
            incoming_type=MessageType.INPUT_STREAM_DATA,
            config=config,
            mark_first_syn=True,
        )
        self.handshake_response: HandshakeResponse | None = None
        self.client_version: str | None = None
        self.end_output: str | None = None  # what channel_closed said (None: not sent)
        self._responded = asyncio.Event()
        self._ready = False  # handshake complete and target connected: client data is welcome
        self._to_target: asyncio.Queue[bytes] = asyncio.Queue()
        self._queued = 0
        self._connection: _TargetConnection | None = None
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
            link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link_task
        return self.end_output if self.end_output is not None else (self.link.closed_reason or "closed")

    async def _serve(self) -> None:
        started = time.monotonic()
        actions = [
            RequestedClientAction(
                ActionType.SESSION_TYPE,
                {"SessionType": SessionType.PORT.value, "Properties": self.target.session_properties()},
            )
        ]
        if self.kms_key_id:
            actions.append(RequestedClientAction(ActionType.KMS_ENCRYPTION, {"KMSKeyId": self.kms_key_id}))
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
        try:
            await self._connect()
        except OSError as exc:
            await self._end_session(f"Unable to connect to specified port: {exc}")
            return
        self._ready = True
        self._spawn(self._write_to_target())
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
        await self.link.close("session ended")
        with contextlib.suppress(Exception):
            await self.transport.close("session ended")

    # --- the target ------------------------------------------------------------------

    async def _connect(self) -> None:
        if self.target.port is None:
            raise OSError(f"nothing listens for port forwarding on {self.target.destination_id or 'the target'}")
        reader, writer = await asyncio.open_connection(self.target.host, self.target.port)
        connection = _TargetConnection(reader, writer)
        self._connection = connection
        self._spawn(self._read_from_target(connection))

    async def _read_from_target(self, connection: _TargetConnection) -> None:
        chunk = self.link.config.chunk_size
        try:
            while data := await connection.reader.read(chunk):
                await self.link.send_data(PayloadType.OUTPUT, data)
        except (ConnectionError, ChannelClosedError):
            pass
        if not connection.dropped:
            # The target hung up (sshd exited...): the session is over.
            self._request_end("")

    async def _write_to_target(self) -> None:
        while True:
            data = await self._to_target.get()
            self._queued -= len(data)
            if self._connection is None:
                # Port forwarding after DisconnectToPort: the agent reconnects on new data.
                try:
                    await self._connect()
                except OSError as exc:
                    self._request_end(f"Unable to connect to specified port: {exc}")
                    return
            assert self._connection is not None
            try:
                self._connection.writer.write(data)
                await self._connection.writer.drain()
            except ConnectionError:
                self._request_end("")
                return

    async def _watch_terminated(self, terminated: threading.Event) -> None:
        # A threading.Event set by the API thread: polling keeps no thread blocked per session.
        while not terminated.is_set():
            await asyncio.sleep(0.1)
        self._request_end(f"Session {self.session_id} was terminated.")

    # --- LinkHandler -------------------------------------------------------------------

    def accepts(self, message: ClientMessage) -> bool:
        if message.payload_type == PayloadType.OUTPUT:
            # Like the agent's "handler not ready": refused data comes back by retransmission.
            return self._ready and self._queued < self.queue_limit
        return True

    async def deliver(self, message: ClientMessage) -> None:
        kind = message.payload_type
        if kind == PayloadType.OUTPUT:
            if message.payload:
                self._queued += len(message.payload)
                self._to_target.put_nowait(message.payload)
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
            elif flag == Flag.DISCONNECT_TO_PORT:
                if self._connection is not None:
                    self._connection.drop()
                    self._connection = None
                if not self.target.port_forwarding:
                    self._request_end("")
        # SIZE, encryption challenge responses...: nothing to do for a port session.

    async def control(self, message: ClientMessage) -> None:
        logger.debug("agent ignores %s from the client", message.message_type)


@dataclass
class _TargetConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    dropped: bool = False  # closed by us (DisconnectToPort), not by the target

    def drop(self) -> None:
        self.dropped = True
        self.writer.close()


ResolveSession = Callable[[str], StreamTarget | None]


class StreamServer:
    """The data-channel WebSocket server, in a thread of its own.

    ``start()`` returns the base URL (``ws://127.0.0.1:PORT``); StartSession's StreamUrl is
    ``<base>/v1/data-channel/<SessionId>``. ``resolve_session`` is called on a worker
    thread (it may block, e.g. to start an sshd) and must be thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        resolve_session: ResolveSession,
        faults: Faults | None = None,
        config: LinkConfig | None = None,
        kms_key_id: str | None = None,
        open_timeout: float = 10.0,
        handshake_timeout: float = 30.0,
        on_session_end: Callable[[str, str], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.resolve_session = resolve_session
        self.faults = faults or Faults()
        self.config = config
        self.kms_key_id = kms_key_id
        self.open_timeout = open_timeout
        self.handshake_timeout = handshake_timeout
        # Called (on the server thread) with the session id and the channel_closed output.
        self.on_session_end = on_session_end
        self.stats: Counter[str] = Counter()  # summed fault statistics, for tests
        self._sessions_started = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._bound_port: int | None = None

    @property
    def base_url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("StreamServer is not started")
        return f"ws://{self.host}:{self._bound_port}"

    def start(self) -> str:
        if self._thread is not None:
            raise RuntimeError("StreamServer is already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._thread_main, name="devcloud-streams", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"StreamServer could not start: {self._error}") from self._error
        return self.base_url

    def stop(self) -> None:
        """Close every channel and the listening socket; safe to call twice."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=15)
        self._thread = None
        self._bound_port = None

    def __enter__(self) -> StreamServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # --- the server thread -------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._check_path,
            ping_interval=None,
            compression=None,
            close_timeout=2,
            open_timeout=self.open_timeout,
        ) as server:
            self._bound_port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    @staticmethod
    def _check_path(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if PATH_PATTERN.fullmatch(path) is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "not a data-channel URL\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        match = PATH_PATTERN.fullmatch(websocket.request.path.split("?", 1)[0] if websocket.request else "")
        assert match is not None  # _check_path let only these through
        session_id = match["session_id"]
        transport = WebSocketTransport(websocket)
        try:
            first = await asyncio.wait_for(transport.recv(), self.open_timeout)
            if not isinstance(first, str):
                raise MessageError("the first frame must be the TEXT open-data-channel input")
            opening = OpenDataChannelInput.from_json(first)
        except (TimeoutError, TransportClosed, MessageError) as exc:
            await websocket.close(POLICY_VIOLATION, f"no valid opening frame: {exc}"[:120])
            return
        try:
            # On a worker thread: the resolver may start a local host and its sshd.
            target = await asyncio.to_thread(self.resolve_session, session_id)
        except Exception:
            logger.exception("resolve_session failed for %s", session_id)
            await websocket.close(INTERNAL_ERROR, "internal error looking up the session")
            return
        if target is None:
            await websocket.close(POLICY_VIOLATION, f"Session {session_id} does not exist or is not active"[:120])
            return
        if not hmac.compare_digest(opening.token_value.encode(), target.token.encode()):
            await websocket.close(POLICY_VIOLATION, "invalid token")
            return
        self._sessions_started += 1
        channel_transport: Transport = transport
        faulty: FaultyTransport | None = None
        if self.faults.active:
            rng = random.Random(f"{self.faults.seed}:{self._sessions_started}")
            faulty = FaultyTransport(transport, self.faults, rng)
            channel_transport = faulty
        session = AgentSession(
            channel_transport,
            target,
            session_id=session_id,
            config=self.config,
            kms_key_id=self.kms_key_id,
            handshake_timeout=self.handshake_timeout,
        )
        output = await session.run()
        if faulty is not None:
            self.stats.update(faulty.stats)
        if self.on_session_end is not None:
            try:
                self.on_session_end(session_id, output)
            except Exception:
                logger.exception("on_session_end failed for %s", session_id)


# --- wiring to devcloud's session registry ----------------------------------------------


class _SessionLike(Protocol):
    target: str
    document_name: str
    parameters: dict[str, list[str]]
    token_value: str
    terminated: threading.Event

    @property
    def active(self) -> bool: ...


class _RegistryLike(Protocol):
    def get(self, session_id: str) -> Any: ...


def registry_resolver(
    registry: _RegistryLike,
    *,
    ssh_port: Callable[[str], int | None],
    agent_version: Callable[[str], str] | None = None,
) -> ResolveSession:
    """A ``resolve_session`` over devcloud's SessionRegistry.

    ``ssh_port(instance_id)`` is the loopback port of that local host's sshd (None if it has
    none): port 22 of an instance means it. Other ports are this machine's own (local hosts
    share its network), and a remote host of AWS-StartPortForwardingSessionToRemoteHost is
    taken as given. Shell documents are not served (devcloud has no agent shell).
    """

    def resolve(session_id: str) -> StreamTarget | None:
        session: _SessionLike | None = registry.get(session_id)
        if session is None or not session.active:
            return None
        if session.document_name != SSH_DOCUMENT and session.document_name not in PORT_FORWARDING_DOCUMENTS:
            return None
        default = "22" if session.document_name == SSH_DOCUMENT else "80"
        port_text = (session.parameters.get("portNumber") or [default])[0]
        try:
            port: int | None = int(port_text)
        except ValueError:
            return None
        host = (session.parameters.get("host") or ["127.0.0.1"])[0]
        if port == 22 and host == "127.0.0.1":
            port = ssh_port(session.target)
        properties: dict[str, Any] = {"portNumber": port_text}
        if session.document_name in PORT_FORWARDING_DOCUMENTS:
            properties["type"] = LOCAL_PORT_FORWARDING
            local = session.parameters.get("localPortNumber")
            if local:
                properties["localPortNumber"] = local[0]
        return StreamTarget(
            token=session.token_value,
            host=host,
            port=port,
            document_name=session.document_name,
            properties=properties,
            agent_version=agent_version(session.target) if agent_version else DEFAULT_AGENT_VERSION,
            destination_id=session.target,
            terminated=session.terminated,
        )

    return resolve


__all__ = [
    "AgentSession",
    "Faults",
    "FaultyTransport",
    "StreamServer",
    "StreamTarget",
    "registry_resolver",
]
