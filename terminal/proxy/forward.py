"""``ssh -L`` through the proxy: each direct-tcpip channel opened again on the portal's own connection.

The target is the instance itself (``localhost``, ``127.0.0.1`` or ``::1``) on a port the account
opens (``AwsAccount.forward_ports``), or a ``host:port`` beyond it that was recorded with the request
and is still on the account (``AccessRequest.destinations_in_force``, an RDS endpoint say); the
check is terminal.proxy.server's. Any other host or port is refused and the refusal written down
(``proxy.refused``). A forwarded connection is on record before a byte passes (``forward.opened``,
its target, and its row, ``terminal.models.ProxyForward``, whose heartbeat the connection's upkeep
writes while it is open): not relayed if that cannot be written. When it closes, ``forward.closed``
says where it went, how long it lasted and how many bytes went each way; when its web process dies,
the orphan sweep writes it (``terminal.sweeps``, ``"reason": "interrupted"``).

One connection has at most ``PASSPORT_PROXY_MAX_FORWARDS`` forwarded connections open at once
(terminal.proxy.server): past it a new one is refused (``proxy.refused``, ``too many forwards``).

An admin who takes the port or the destination off the account closes the forwards already open
to it (``ProxyConnection.forwarding_changed``, told by terminal.services, or the connection's
periodic check when that message was lost): their ``forward.closed`` says
``reason: "destination withdrawn"``. A forward open when Passport ends the whole connection (the
request ended) says that reason.

On an account whose sessions are moderated (``AwsAccount.require_session_join``) no forward is
relayed: shells, commands and file transfers wait for an approver to watch them, and a forward's bytes
cannot be watched. A new one is refused (``proxy.refused``, ``"reason": "moderated"``); those open
when moderation is turned on close (told as for a forwarding change, or found by the periodic check),
their ``forward.closed`` saying ``reason: "moderation on"``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import asyncssh

from core.text import visible
from requests_app.selectors import ForwardingInForce
from terminal.proxy import logbook
from terminal.proxy.backpressure import PausableReader, PausesPeer
from terminal.services.forwards import proxy_forward_open
from terminal.threads import in_db_thread

if TYPE_CHECKING:
    from terminal.proxy.session import ProxyConnection

logger = logging.getLogger(__name__)

WITHDRAWN = "destination withdrawn"
# Why the open forwards closed when the account's sessions became moderated (``forward.closed``), and
# why a new one is refused there (``proxy.refused``): no approver can watch a forward.
MODERATION_ON = "moderation on"
MODERATED = "moderated"
# The window the instance's side of a forward may send into: what the web process holds of the
# target's bytes while the engineer's local reader does not read (asyncssh's default is 2 MiB), for
# each of up to PASSPORT_PROXY_MAX_FORWARDS forwards a connection. A window a round trip: 5 MiB/s
# still over a 100 ms path to the instance.
UPSTREAM_WINDOW = 512 * 1024


class _InstanceSide(PausesPeer, asyncssh.SSHTCPSession[bytes]):
    def __init__(self, relay: ForwardRelay) -> None:
        self.relay = relay

    def peer(self) -> PausableReader | None:
        return self.relay.chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.relay.from_instance(data)

    def eof_received(self) -> bool:
        if self.relay.chan is not None and not self.relay.chan.is_closing():
            self.relay.chan.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.close()


class ForwardRelay(PausesPeer, asyncssh.SSHTCPSession[bytes]):
    """The client's side of one forwarded TCP connection."""

    def __init__(self, proxy: ProxyConnection, host: str, port: int, *, destination: str | None = None) -> None:
        self.proxy = proxy
        self.host, self.port = host, port
        # ``host:port`` beyond the instance, as the account lists it; None for the instance's own port.
        self.destination = destination
        self.chan: asyncssh.SSHTCPChannel[bytes] | None = None
        self.up: asyncssh.SSHTCPChannel[bytes] | None = None
        self.to_instance = 0
        self.from_instance_bytes = 0
        self._started = time.monotonic()
        self._closed = False
        # Its row (``ProxyForward``), once on record: its heartbeat and its end name it.
        self.record_id: int | None = None

    async def open(self, *, changes_seen: int) -> ForwardRelay:
        """Open the same target on the instance's side; raises ChannelOpenError if it cannot.

        ``changes_seen``: the connection's count of forwarding changes when the rules that let this
        relay through were read. One heard since may have come before this relay was listed in
        ``proxy.forwards``: the rules are read again."""
        try:
            connection = await self.proxy.upstream_ready()
        except Exception as exc:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED, f"The instance is not reachable: {visible(exc)}"
            ) from exc
        # On record before the instance's side opens, so before a byte passes either way: a forward
        # whose web process dies later still names its target.
        try:
            self.record_id = await in_db_thread(proxy_forward_open)(
                grant=self.proxy.grant, user=self.proxy.user, host=self.host, port=self.port
            )
        except Exception as exc:
            logger.warning("CLI proxy on grant %s: a forward not put on record", self.proxy.grant.pk, exc_info=True)
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED, "The forward could not be put on record, so it is not relayed."
            ) from exc
        try:
            self.up, _ = await connection.create_connection(
                lambda: _InstanceSide(self), self.host, self.port, window=UPSTREAM_WINDOW
            )
        except asyncssh.ChannelOpenError as refused:
            self.close(reason=f"not opened on the instance: {visible(refused.reason)}")
            # The instance's sshd's own words, passed on to the engineer's ssh: escaped (core.text).
            raise asyncssh.ChannelOpenError(refused.code, visible(refused.reason), refused.lang) from refused
        except BaseException:
            self.close(reason="not opened on the instance")
            raise
        self.proxy.forwards.add(self)
        if self.proxy.forwarding_changes != changes_seen:
            self.proxy.spawn(self.proxy.withdraw_forwards())
        return self

    def allowed_by(self, in_force: ForwardingInForce) -> bool:
        """Whether this relay's target is still one ``ssh -L`` may reach (none on a moderated account)."""
        if in_force.moderated:
            return False
        if self.destination is not None:
            return self.destination in in_force.destinations
        return self.port in in_force.ports

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self.chan = chan
        if self._closed:
            chan.close()  # withdrawn before asyncssh handed over the client's channel

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.to_instance += len(data)
        if self.up is not None:
            self.up.write(data)

    def eof_received(self) -> bool:
        if self.up is not None:
            self.up.write_eof()
        return True

    def peer(self) -> PausableReader | None:
        return self.up

    def from_instance(self, data: bytes) -> None:
        self.from_instance_bytes += len(data)
        if self.chan is not None and not self.chan.is_closing():
            self.chan.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self, *, reason: str | None = None) -> None:
        """Close both sides and write ``forward.closed``, once (with ``reason`` when Passport closed it)."""
        if self._closed:
            return
        self._closed = True
        self.proxy.forwards.discard(self)
        for chan in (self.chan, self.up):
            if chan is not None:
                chan.close()
        self.proxy.log(
            logbook.proxy_forward_closed,
            host=self.host,
            port=self.port,
            seconds=time.monotonic() - self._started,
            bytes_to_instance=self.to_instance,
            bytes_from_instance=self.from_instance_bytes,
            reason=reason,
            forward_id=self.record_id,
        )
