"""One CLI connection through the proxy: the socket pair, the SSH server, the upstream, the ending.

The WebSocket's binary frames are the raw bytes of the engineer's SSH connection: they go into
one end of a socket pair whose other end is the asyncssh server (terminal.proxy.server). Once
the client has authenticated, the portal opens its own connection to the instance
(terminal.proxy.upstream) and every channel is relayed and recorded (relay, forward). The
connection ends when the SSH client leaves, or when the request ends or the person signs out
(``terminal.close`` from the channel layer): then the client is told why in a ``closed`` text
frame, the recordings are sealed and the Session Manager session is terminated. Should the ending's
message not arrive, every new channel reads the grant first and is refused (``refusal``), and the
connection reads its request every ``PASSPORT_PROXY_REQUEST_CHECK_SECONDS`` and ends itself. The
CLI token it signed in with ends it too: at the token's end (read at the handshake, and again at
each of those checks, which also see a revocation whose message was lost), after which no new
channel opens either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncssh

from accounts.models import User
from requests_app.models import Grant
from requests_app.selectors import ForwardingInForce, grant_forwarding_in_force
from sshca.services import ca_trusted_public_keys
from terminal.proxy import logbook
from terminal.proxy.auth import CLOSE_ENDED, CLOSE_UNAVAILABLE
from terminal.proxy.forward import MODERATION_ON, WITHDRAWN, ForwardRelay
from terminal.proxy.hostkey import host_certificate, process_host_key
from terminal.proxy.relay import SessionRelay
from terminal.proxy.server import run_proxy_server
from terminal.proxy.sign_in import SignIn
from terminal.proxy.upkeep import connection_upkeep
from terminal.proxy.upstream import Upstream
from terminal.services import (
    SIGN_IN_EXPIRED_MESSAGE,
    request_ended_message,
    terminal_ended_for_ca_key,
    terminal_ended_for_iam,
    terminal_ended_for_region,
    terminal_refusal,
)
from terminal.slots import session_slot_release
from terminal.threads import in_db_thread

logger = logging.getLogger(__name__)

UNCHECKED_MESSAGE = "Passport could not check the access request just now; try again."
READ_SIZE = 64 * 1024
# At the end, how long an upstream still opening is waited for, so that its session is terminated.
UPSTREAM_OPEN_WAIT_SECONDS = 30


def as_session_reason(message: str) -> str:
    """A terminal's closing message (terminal.services) as the CLI's session says it."""
    return message.replace("this terminal is closed", "this session is closed")


class Peer(Protocol):
    """The WebSocket (the consumer): bytes to the CLI, its control frames, and its close."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int) -> None: ...


def control(kind: str, reason: str) -> str:
    """A control text frame: ``{"type": "closed"|"refused", "reason": ...}``."""
    return json.dumps({"type": kind, "reason": reason})


def _read_failure(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's exception as seen (asyncio logs an unseen one as an error)."""
    if not task.cancelled():
        task.exception()


class ProxyConnection:
    def __init__(
        self,
        *,
        user: User,
        grant: Grant,
        peer: Peer,
        slot_id: int | None = None,
        sign_in: SignIn | None = None,
    ) -> None:
        self.user = user
        # The CLI token this connection signed in with, and its end: the connection ends then
        # (terminal.proxy.upkeep), and no new channel opens after it (``refusal``).
        self.sign_in = sign_in or SignIn()
        # This connection's place under the cap on open sessions (terminal.slots) as long as the SSH
        # connection is open: named by its shells' and commands' rows, touched while it lives
        # (forwards only, idle, between commands too), released at the end.
        self.slot_id = slot_id
        self.grant = grant
        self.peer = peer
        self.relays: set[SessionRelay] = set()
        self.forwards: set[ForwardRelay] = set()
        # How many times an admin's change of the account's ports or destinations was heard (a relay
        # opening meanwhile reads the rules again: ForwardRelay.open).
        self.forwarding_changes = 0
        self.upstream = Upstream(grant=grant, user=user)
        # The CA keys (SHA256 fingerprints) that signed the client's certificate (terminal.proxy.server).
        self.client_signers: set[str] = set()
        self.ssh: asyncssh.SSHServerConnection | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._upstream_task: asyncio.Task[asyncssh.SSHClientConnection] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ending: asyncio.Task[None] | None = None
        self._upkeep_task: asyncio.Task[None] | None = None

    @property
    def ssm_session_id(self) -> str:
        return self.upstream.ssm_session_id

    @property
    def ending(self) -> bool:
        """Whether the connection's ending has begun (``end_soon``)."""
        return self._ending is not None

    # --- helpers the relays use -------------------------------------------------------------
    def spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def log(self, function: Callable[..., None], **detail: Any) -> None:
        """A Logbook entry about this grant by this person, written off the event loop."""
        self.spawn(in_db_thread(function)(grant=self.grant, user=self.user, **detail))

    async def refusal(self, what: str, **detail: object) -> str | None:
        """Before a new session or ``direct-tcpip`` channel: None while the grant allows one now
        (``terminal.services.terminal_refusal``, read afresh: the ending's ``terminal.close`` may be
        late or lost); otherwise why not, as the client is to be told, and on record as
        ``proxy.refused``. Unreadable: refused too, the grant unconfirmed. Past the end of the CLI
        sign-in the connection was opened with: refused, whatever the grant says."""
        refused: str | None = SIGN_IN_EXPIRED_MESSAGE
        if not self.sign_in.over():
            try:
                refused = await in_db_thread(terminal_refusal)(grant=self.grant)
            except Exception:
                logger.warning("CLI proxy on grant %s: the grant not checked", self.grant.pk, exc_info=True)
                refused = UNCHECKED_MESSAGE
        if refused is None:
            return None
        reason = as_session_reason(refused)
        self.log(logbook.proxy_refused, what=what, reason=reason, **detail)
        return reason

    # --- start --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the SSH server on a socket pair; the client's bytes go in through ``feed``; and the
        connection's periodic checks (terminal.proxy.upkeep)."""
        instance_id = self.grant.instance.instance_id
        certificate = await in_db_thread(host_certificate)(instance_id)
        trusted = await in_db_thread(ca_trusted_public_keys)()
        ours, theirs = socket.socketpair()
        reader, self._writer = await asyncio.open_connection(sock=ours)
        self.spawn(self._pump_out(reader))
        self.spawn(self._serve(theirs, certificate, trusted))
        self._upkeep_task = asyncio.ensure_future(connection_upkeep(self))

    async def _serve(self, sock: socket.socket, certificate: asyncssh.SSHCertificate, trusted: list[str]) -> None:
        try:
            self.ssh = await run_proxy_server(
                sock, proxy=self, host_key=process_host_key(), host_certificate=certificate, trusted_ca_lines=trusted
            )
            await self.ssh.wait_closed()
        except Exception as exc:
            logger.info("proxy SSH connection on grant %s ended: %s", self.grant.pk, exc)
        self.end_soon("The SSH connection closed.", notify=False)

    async def _pump_out(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(READ_SIZE):
                await self.peer.send_bytes(data)
        self.end_soon("The SSH connection closed.", notify=False)

    async def feed(self, data: bytes) -> None:
        """Bytes from the CLI (a binary frame) into the SSH server."""
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write(data)
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    # --- the instance's side ------------------------------------------------------------------
    def authenticated(self) -> None:
        """The client logged in: open the portal's own connection to the instance now."""
        if self._upstream_task is None:
            self._upstream_task = asyncio.create_task(self._open_upstream())
            # Its failure is handled where it happens (the connection ends with the reason); a
            # connection that asked nothing of it yet (``ssh -N``, a tunnel) must not leave it unread.
            self._upstream_task.add_done_callback(_read_failure)

    async def _open_upstream(self) -> asyncssh.SSHClientConnection:
        try:
            connection = await self.upstream.open()
        except Exception as exc:
            logger.warning("proxy upstream on grant %s failed: %s", self.grant.pk, exc)
            await self._end_instance_side_lost(f"The connection to the instance failed: {exc}")
            raise
        self.spawn(self._watch_upstream(connection))
        return connection

    async def _watch_upstream(self, connection: asyncssh.SSHClientConnection) -> None:
        """The instance's side gone (the data channel or sshd ended it): nothing more can be relayed.

        When the request ended, its removal may have ended the Session Manager session before the
        channel layer's ``terminal.close`` arrived: the connection then closes with the request's
        own reason, as that message would have closed it, not as a lost connection."""
        with contextlib.suppress(Exception):
            await connection.wait_closed()
        await self._end_instance_side_lost("The connection to the instance closed.")

    async def _end_instance_side_lost(self, reason: str) -> None:
        """End with the request's own reason when it has ended (its removal ends the Session Manager
        session, also while it opens), else with ``reason``, as a connection lost."""
        if self._ending is not None:
            return
        try:
            ended = await in_db_thread(request_ended_message)(request_id=self.grant.request_id)
        except Exception:
            logger.warning("CLI proxy on grant %s: the request's state not read", self.grant.pk, exc_info=True)
            ended = None
        if ended is not None:
            self.end_for_request(ended)
        else:
            self.end_soon(reason, code=CLOSE_UNAVAILABLE)

    async def upstream_ready(self) -> asyncssh.SSHClientConnection:
        if self._upstream_task is None:
            raise ConnectionError("not authenticated")
        return await asyncio.shield(self._upstream_task)

    # --- what ssh -L may reach ---------------------------------------------------------------
    def forwarding_changed(self) -> None:
        """An admin changed the account's ports or destinations (``cli.forwarding_changed``, after
        commit): the open forwards are checked against what is in force now."""
        self.forwarding_changes += 1
        self.spawn(self.withdraw_forwards())

    async def withdraw_forwards(self, *, fail_closed: bool = True) -> None:
        """Close every open forward whose target is no longer allowed (``forward.closed`` says it was
        withdrawn), or all of them once the account's sessions are moderated (``forward.closed`` says
        ``moderation on``). Only closes: a forward refused when it was opened stays refused.

        ``fail_closed``: when the rules cannot be read, close every open forward. Told of a change,
        nothing may stay open that may no longer be; the periodic check (terminal.proxy.upkeep), which knows
        of no change, leaves them and reads again at its next round, so a database blip does not
        cut every forward of every connection."""
        if not self.forwards or self._ending is not None:
            return
        try:
            in_force = await in_db_thread(grant_forwarding_in_force)(grant=self.grant)
        except Exception:
            logger.warning("CLI proxy on grant %s: forwarding rules unreadable", self.grant.pk, exc_info=True)
            if not fail_closed:
                return
            in_force = ForwardingInForce(ports=(), destinations=())
        reason = MODERATION_ON if in_force.moderated else WITHDRAWN
        for forward in list(self.forwards):
            if not forward.allowed_by(in_force):
                forward.close(reason=reason)

    # --- a CA key retired ---------------------------------------------------------------------
    def ca_key_retired(self, fingerprint: str, reason: str) -> None:
        """A CA key was retired (``terminal.ca_key_retired``, after commit): if it signed the CLI's
        certificate or the upstream's (sshd would not re-check either), ended and on record."""
        keys = self.upstream.keys
        if fingerprint in self.client_signers:
            certificate = "client"
        elif keys is not None and fingerprint in keys.signers:
            certificate = "login"
        else:
            return
        if self._ending is None:
            ended = in_db_thread(terminal_ended_for_ca_key)
            self.spawn(ended(grant=self.grant, client="cli", fingerprint=fingerprint, certificate=certificate,
                             ssm_session_id=self.ssm_session_id))  # fmt: skip
            self.end_soon(as_session_reason(reason))

    # --- the IAM gate asked again ---------------------------------------------------------------
    def iam_denied(self, *, grant_id: int, user_id: int, reason: str, refusal: str) -> None:
        """The IAM gate now refuses ``user_id`` on ``grant_id`` (``terminal.iam_denied``): if that is
        this connection's person and grant, ended and on record (``session.terminated``, ``iam_denied``)."""
        if grant_id != self.grant.pk or user_id != self.user.pk or self._ending is not None:
            return
        ended = in_db_thread(terminal_ended_for_iam)
        self.spawn(ended(grant=self.grant, client="cli", refusal=refusal, ssm_session_id=self.ssm_session_id))
        self.end_soon(as_session_reason(reason))

    # --- the instance's region taken off its account -------------------------------------------
    def region_off(self, *, grant_ids: list[int], region: str, reason: str) -> None:
        """An admin took the region of one of these grants' instances off the account
        (``terminal.region_off``, or this connection's own periodic read: terminal.proxy.upkeep): if
        this connection's grant is one, ended and on record (``session.terminated``, ``region``)."""
        if self.grant.pk not in grant_ids or self._ending is not None:
            return
        ended = in_db_thread(terminal_ended_for_region)
        self.spawn(ended(grant=self.grant, client="cli", region=region, ssm_session_id=self.ssm_session_id))
        self.end_soon(as_session_reason(reason))

    # --- ending -------------------------------------------------------------------------------
    def end_for_request(self, message: str) -> None:
        """End with the request's own reason (``terminal.services.request_ended_message``)."""
        self.end_soon(as_session_reason(message))

    def end_soon(self, reason: str, *, code: int = CLOSE_ENDED, notify: bool = True) -> None:
        if self._ending is None:
            self._ending = asyncio.create_task(self._end(reason, code=code, notify=notify))

    async def end(self, reason: str, *, code: int = CLOSE_ENDED, notify: bool = True) -> None:
        self.end_soon(reason, code=code, notify=notify)
        assert self._ending is not None
        await asyncio.shield(self._ending)

    async def _end(self, reason: str, *, code: int, notify: bool) -> None:
        """Tell the CLI why (``closed``), close the socket, the channels, the SSH connections and the
        Session Manager session, and seal every recording with the reason."""
        if self._upkeep_task is not None:
            self._upkeep_task.cancel()
        with contextlib.suppress(Exception):
            if notify:
                await self.peer.send_text(control("closed", reason))
            await self.peer.close(code if notify else 1000)
        relays = list(self.relays)
        for relay in relays:
            relay.stop(reason, tell=False)
        for forward in list(self.forwards):
            # Ended by Passport (``notify``): each open forward's ``forward.closed`` says why.
            forward.close(reason=reason if notify else None)
        if self.ssh is not None:
            self.ssh.close()
        if self._writer is not None:
            self._writer.close()
        if self._upstream_task is not None and not self._upstream_task.done():
            # Not cancelled: a Session Manager session started meanwhile must be known to be terminated.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._upstream_task), UPSTREAM_OPEN_WAIT_SECONDS)
        await self.upstream.close()
        for relay in relays:
            with contextlib.suppress(Exception):
                await relay.finish(reason)
        # Logbook entries and seals spawned by the channels as they closed.
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=30)
        slot_id, self.slot_id = self.slot_id, None
        if slot_id is not None:
            with contextlib.suppress(Exception):
                await in_db_thread(session_slot_release)(slot_id=slot_id)
