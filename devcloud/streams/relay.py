"""The data-channel WebSocket server: checks the opening frame's token, then runs an AgentSession."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from devcloud.streams.agent import HANDSHAKE_TIMEOUT, AgentSession
from devcloud.streams.faults import Faults, FaultyTransport
from devcloud.streams.resumable import ResumableTransport
from devcloud.streams.smux import KEEPALIVE
from devcloud.streams.target import ResolveSession
from ssmchannel.errors import MessageError, TransportClosed
from ssmchannel.link_terms import LinkConfig
from ssmchannel.messages import OpenDataChannelInput
from ssmchannel.transport import Transport, WebSocketTransport

logger = logging.getLogger(__name__)

PATH_PATTERN = re.compile(r"/v1/data-channel/(?P<session_id>[A-Za-z0-9._@+=,-]+)")
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
# Session Manager's default idle session timeout (the Session Manager preferences allow 1-60 minutes).
IDLE_TIMEOUT = 20 * 60.0
CONNECTED = "Connected"
DISCONNECTED = "Disconnected"


class StreamServer:
    """The data-channel WebSocket server, in a thread of its own.

    ``start()`` returns the base URL (``ws://127.0.0.1:PORT``); StartSession's StreamUrl is
    ``<base>/v1/data-channel/<SessionId>``. ``resolve_session`` is called on a worker
    thread (it may block, e.g. to start an sshd) and must be thread-safe.

    A session outlives its WebSocket, as in AWS (``ResumableTransport``): when the client's
    connection drops, ``on_session_status(session_id, "Disconnected")`` is called and the
    agent side keeps the target connection and its sequence numbers; a connection with the
    session's current token (after ResumeSession) takes over and the status goes back to
    "Connected". The session ends (``on_session_end``) when the agent ends it, when it is
    terminated, after ``idle_timeout`` seconds without input from the client (read when each
    session starts, so tests may shorten it), or when the server stops.
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
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        on_session_end: Callable[[str, str], None] | None = None,
        mux_keepalive: tuple[float, float] | None = None,
        on_session_status: Callable[[str, str], None] | None = None,
        idle_timeout: float | None = IDLE_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.resolve_session = resolve_session
        self.faults = faults or Faults()
        self.config = config  # the agent side's link; None: the agent's (agent.AGENT_LINK_CONFIG)
        self.kms_key_id = kms_key_id
        self.open_timeout = open_timeout
        self.handshake_timeout = handshake_timeout
        # Called (on the server thread) with the session id and the channel_closed output.
        self.on_session_end = on_session_end
        self.mux_keepalive = mux_keepalive  # None: smux's own 10 s / 30 s (tests shorten it)
        self.on_session_status = on_session_status  # (session id, "Connected" / "Disconnected")
        self.idle_timeout = idle_timeout
        self._live: dict[str, ResumableTransport] = {}  # sessions being served, by id (server thread only)
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
            # Sessions waiting for their client to come back end with the server.
            for live in list(self._live.values()):
                await live.close("devcloud is stopping")

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
        # The client waits for our HandshakeRequest now: binary frames can take the lean path.
        transport.enable_fast_path()
        live = self._live.get(session_id)
        if live is not None and live.token != target.token:
            # A token from ResumeSession: this connection carries the live session from now on.
            # (The token a session started with opens a session of its own, as before.)
            live.token = target.token
            await live.attach(transport)
            await ResumableTransport.wait_closed(transport)
            return
        self._sessions_started += 1
        resumable = ResumableTransport(transport, token=target.token)
        channel_transport: Transport = resumable
        faulty: FaultyTransport | None = None
        if self.faults.active:
            rng = random.Random(f"{self.faults.seed}:{self._sessions_started}")
            faulty = FaultyTransport(resumable, self.faults, rng)
            channel_transport = faulty
        session = AgentSession(
            channel_transport,
            target,
            session_id=session_id,
            config=self.config,
            kms_key_id=self.kms_key_id,
            handshake_timeout=self.handshake_timeout,
            mux_keepalive=self.mux_keepalive or KEEPALIVE,
            idle_timeout=self.idle_timeout,
        )
        resumable.on_detach = lambda: self._status_changed(session, session_id, DISCONNECTED)
        resumable.on_attach = lambda: self._status_changed(session, session_id, CONNECTED)
        self._live[session_id] = resumable
        try:
            output = await session.run()
        finally:
            if self._live.get(session_id) is resumable:
                del self._live[session_id]
            await resumable.close("session ended")
        if faulty is not None:
            self.stats.update(faulty.stats)
        if self.on_session_end is not None:
            try:
                self.on_session_end(session_id, output)
            except Exception:
                logger.exception("on_session_end failed for %s", session_id)

    def _status_changed(self, session: AgentSession, session_id: str, status: str) -> None:
        if status == DISCONNECTED:
            session.client_detached()
        else:
            session.client_attached()
        if self.on_session_status is not None:
            try:
                self.on_session_status(session_id, status)
            except Exception:
                logger.exception("on_session_status failed for %s", session_id)
