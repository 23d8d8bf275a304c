"""The asyncssh SSH server the engineer's OpenSSH client talks to, inside the portal process.

Authentication is public key with a Passport user certificate only (no password, no
keyboard-interactive): signed by a trusted user CA (sshca.services.ca_trusted_public_keys, as read
when the connection opened), by the key Passport recorded and still not retired as read at sign-in,
for the grant's principal (``grant-<uid>``), with the SSH username the grant's, currently valid,
and whose serial is an sshca IssuedCertificate of this grant's request whose key id names this
grant (sshca.services.certificate_key_id). A certificate from another request or grant is
refused. Agent forwarding, X11 and remote forwarding (-R) are refused and written down;
``ssh -L`` reaches only the account's ports on the instance, and the destinations beyond it
that were recorded with the request and are still on the account, both read afresh for each
forwarded connection (terminal.proxy.forward), and at most ``PASSPORT_PROXY_MAX_FORWARDS`` of them
open at once; none on an account whose sessions are moderated. Each refusal is written down once
per refusal window and then counted (terminal.proxy.logbook).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

import asyncssh
from asyncssh.connection import SSHServerConnection, _connect
from asyncssh.packet import SSHPacket
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.utils import timezone

from core.destinations import INSTANCE_ITSELF, destination_of_request
from core.usernames import proxy_principal
from requests_app.models import Grant
from requests_app.selectors import grant_forwarding_in_force
from requests_app.services.credentials import SSH_PORT
from sshca.crypto import sha256_fingerprint
from sshca.models import CaKey, IssuedCertificate
from terminal.proxy import logbook
from terminal.proxy.forward import MODERATED, ForwardRelay
from terminal.proxy.relay import SessionRelay

if TYPE_CHECKING:
    from terminal.proxy.session import ProxyConnection

logger = logging.getLogger(__name__)

LOGIN_GRACE_SECONDS = 60


def certificate_of_grant(*, grant: Grant, certificate_line: bytes) -> str | None:
    """None if this user certificate (an OpenSSH line) was issued by Passport for this grant; otherwise why not."""
    try:
        parsed = serialization.load_ssh_public_identity(certificate_line.strip())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"unreadable certificate: {exc}"
    if not isinstance(parsed, serialization.SSHCertificate):
        return "not a certificate"
    key_id = parsed.key_id.decode(errors="replace")
    row = IssuedCertificate.objects.select_related("ca_key").filter(pk=parsed.serial).first()
    if row is None or row.request_id != grant.request_id:
        return "the certificate was not issued for this request"
    if row.key_id != key_id or not key_id.startswith(f"passport grant={grant.uid} "):
        return "the certificate was issued for another grant"
    if row.principal != proxy_principal(grant.uid) or row.valid_before <= timezone.now():
        return "the certificate is not valid for this grant now"
    subject = parsed.public_key()
    if sha256_fingerprint(subject) != row.public_key_fingerprint:
        return "the certificate's key is not the one Passport signed"
    # The trusted keys were read when the connection opened (up to LOGIN_GRACE_SECONDS ago): a key
    # retired since (a compromised one, forced) is refused as read now. One retired after this
    # read ends the connection (its signer is in ``client_signers`` before this check).
    if sha256_fingerprint(parsed.signature_key()) != row.ca_key.fingerprint:
        return "the certificate was not signed by the CA key Passport signed it with"
    if row.ca_key.purpose != CaKey.Purpose.USER or not row.ca_key.is_trusted:
        return "the CA key that signed the certificate is retired"
    return None


# What ``ssh -L`` may name as its target on the instance itself: its loopback names.
FORWARD_HOSTS = INSTANCE_ITSELF
TOO_MANY_FORWARDS = "too many forwards"
MODERATED_FORWARD_MESSAGE = (
    "Sessions on this account are moderated: an approver watches every session, and a forward (ssh -L, -W) cannot "
    "be watched, so none is opened. Shells, commands and file transfers start once an approver joins them."
)


class ProxyServerChannel(asyncssh.SSHServerChannel[bytes]):
    """asyncssh's session channel, except for a pty request whose terminal type is not ASCII: asyncssh
    would close the whole connection over it, unexplained and unrecorded; the relay refuses the channel
    instead, saying why, as it does any terminal type it will not pass on (its size and modes unread)."""

    def _process_pty_req_request(self, packet: SSHPacket) -> bool:
        payload = packet.get_remaining_payload()
        term = SSHPacket(payload).get_string()
        if term.isascii() or not isinstance(self._session, SessionRelay):
            return bool(super()._process_pty_req_request(SSHPacket(payload)))
        return self._session.pty_requested(term.decode("utf-8", "backslashreplace"), (0, 0, 0, 0), {})


class ProxyServerConnection(SSHServerConnection):
    """asyncssh's server connection, with the grant's own checks after its certificate checks."""

    def create_server_channel(self, *args: Any, **kwargs: Any) -> asyncssh.SSHServerChannel[Any]:
        channel = super().create_server_channel(*args, **kwargs)
        channel.__class__ = ProxyServerChannel  # the same object, one method told apart
        return channel

    async def _validate_openssh_certificate(self, username: str, cert: Any) -> asyncssh.SSHKey | None:
        key = await super()._validate_openssh_certificate(username, cert)
        if key is None:
            return None
        owner = cast(ProxyServer, self._owner)
        # Should the CA key that signed it be retired, the connection is ended (ProxyConnection):
        # noted before the check reads the key's state, so a retirement committed after that read
        # finds this connection (its message comes after its commit).
        signer = cert.signing_key.get_fingerprint("sha256")
        noted = signer not in owner.proxy.client_signers
        owner.proxy.client_signers.add(signer)
        if not await owner.certificate_allowed(cert.export_certificate("openssh")):
            if noted:
                owner.proxy.client_signers.discard(signer)
            return None
        return key

    async def create_agent_listener(self) -> bool:
        cast(ProxyServer, self._owner).refused("agent forwarding", "agent forwarding is not allowed through Passport")
        return False

    async def attach_x11_listener(self, chan: Any, auth_proto: bytes, auth_data: bytes, screen: int) -> str | None:
        cast(ProxyServer, self._owner).refused("x11 forwarding", "X11 forwarding is not allowed through Passport")
        return None


class ProxyServer(asyncssh.SSHServer):
    """One client connection's server side: authentication and what channels it may open."""

    def __init__(self, proxy: ProxyConnection, trusted_ca_lines: list[str]) -> None:
        self.proxy = proxy
        self.trusted_ca_lines = trusted_ca_lines
        self.connection: asyncssh.SSHServerConnection | None = None
        # ``ssh -L`` connections asked for and not yet open or refused (``connection_requested``).
        self.forwards_opening = 0

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.connection = conn

    def refused(self, what: str, reason: str, *, key: str = "", **detail: object) -> None:
        self.proxy.log(logbook.proxy_refused, what=what, reason=reason, key=key, **detail)

    def begin_auth(self, username: str) -> bool:
        assert self.connection is not None
        grant = self.proxy.grant
        if username != grant.username:
            self.refused("login", "the SSH username is not the grant's", username=username[:64])
            self.connection.set_authorized_keys(asyncssh.import_authorized_keys(""))
            return True
        # Only certificates issued for the proxy (``proxy_principal``): the instance's sshd never
        # accepts those, so a person's certificate cannot log in past the proxy, unrecorded.
        principal = proxy_principal(grant.uid)
        lines = "".join(f'cert-authority,principals="{principal}" {line.strip()}\n' for line in self.trusted_ca_lines)
        self.connection.set_authorized_keys(asyncssh.import_authorized_keys(lines))
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def certificate_allowed(self, certificate_line: bytes) -> bool:
        from terminal.threads import in_db_thread

        problem = await in_db_thread(certificate_of_grant)(grant=self.proxy.grant, certificate_line=certificate_line)
        if problem is not None:
            self.refused("certificate", problem)
            return False
        return True

    def auth_completed(self) -> None:
        self.proxy.authenticated()

    def session_requested(self) -> SessionRelay:
        return SessionRelay(self.proxy)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        """An ``ssh -L`` connection: refused at once past ``PASSPORT_PROXY_MAX_FORWARDS`` open or
        opening on this connection (each holds memory here: its channels, and up to a window of the
        target's bytes while the local reader does not read), else checked and opened."""
        limit = settings.PASSPORT_PROXY_MAX_FORWARDS
        # Asked one after another as the client's requests arrive: those still opening count too.
        held = len(self.proxy.forwards) + self.forwards_opening
        if held >= limit:
            self.refused("forward", TOO_MANY_FORWARDS, host=dest_host[:255], port=dest_port, open=held,
                         max_forwards=limit)  # fmt: skip
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"This connection has {held} forwarded connections open: at most {limit} forwarded connections "
                "at once through Passport. Close one and try again.",
            )
        self.forwards_opening += 1
        return self._forward_requested(dest_host, dest_port)

    async def _forward_requested(self, dest_host: str, dest_port: int) -> ForwardRelay:
        """The grant still allowed and the account's ports and the request's destinations, as read now
        (the request may have ended, an admin may have taken one off, since the connection opened);
        a change of them afterwards closes the relay (``ProxyConnection.forwarding_changed``)."""
        try:
            return await self._forward_checked(dest_host, dest_port)
        finally:
            # Open (``proxy.forwards`` counts it from here) or refused.
            self.forwards_opening -= 1

    async def _forward_checked(self, dest_host: str, dest_port: int) -> ForwardRelay:
        from terminal.threads import in_db_thread

        if dest_host in FORWARD_HOSTS and dest_port == SSH_PORT:
            # A tunnel to the instance's own sshd would carry an SSH session the proxy cannot read.
            self.refused("port forward", "a tunnel to the instance's sshd would not be recorded", host=dest_host[:255],
                         port=dest_port)  # fmt: skip
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                "SSH sessions on this account are recorded: connect with ssh through Passport, not a tunnel to "
                f"port {SSH_PORT}.",
            )
        # The grant as it is now: a connection may outlive its request's ending by as long as the
        # ending's message takes to reach it, or its own periodic check (terminal.proxy.session).
        refused = await self.proxy.refusal("port forward", host=dest_host[:255], port=dest_port)
        if refused is not None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, refused)
        # Read before the rules: a change heard while the relay opens is checked again once it is open.
        seen = self.proxy.forwarding_changes
        in_force = await in_db_thread(grant_forwarding_in_force)(grant=self.proxy.grant)
        if in_force.moderated:
            # Shells, commands and transfers wait for an approver to watch; a forward's bytes cannot be watched.
            self.refused("forward", MODERATED, host=dest_host[:255], port=dest_port)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, MODERATED_FORWARD_MESSAGE)
        if dest_host not in FORWARD_HOSTS:
            relay = self._destination_relay(dest_host, dest_port, in_force.destinations)
        elif dest_port not in in_force.ports:
            allowed = in_force.ports
            listed = ", ".join(str(port) for port in allowed)
            # One entry for every port refused so in a window (a scan), each port counted.
            self.refused("port forward", f"port {dest_port} is not open on this account", key="port not open",
                         host=dest_host[:255], port=dest_port, allowed=list(allowed))  # fmt: skip
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"Port {dest_port} is not open for sessions on this account: the allowed ports are {listed}.",
            )
        else:
            relay = ForwardRelay(self.proxy, dest_host, dest_port)
        return await relay.open(changes_seen=seen)

    def _destination_relay(self, dest_host: str, dest_port: int, allowed: tuple[str, ...]) -> ForwardRelay:
        """A host beyond the instance: its sshd would dial any host it can reach (another instance's
        RDP, a database in the VPC), so only a destination approved with the request, and still on
        the account as read now, is relayed: by its one spelling, which the instance's permitopen
        names too."""
        destination = destination_of_request(dest_host, dest_port)
        if destination is None or str(destination) not in allowed:
            reason = "only the instance itself can be reached"
            message = "Only the instance itself can be reached through Passport: forward to localhost:PORT."
            if allowed:
                reason = "only the instance itself and the request's destinations can be reached"
                message = (
                    "Only the instance itself (localhost:PORT) and the destinations approved with this request "
                    f"can be reached through Passport: {', '.join(allowed)}."
                )
            self.refused("port forward", reason, host=dest_host[:255], port=dest_port,
                         allowed_destinations=list(allowed))  # fmt: skip
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, message)
        return ForwardRelay(self.proxy, destination.host, destination.port, destination=str(destination))

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self.refused("remote forward", "remote port forwarding (-R) is not allowed through Passport",
                     host=listen_host[:255], port=listen_port)  # fmt: skip
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        self.refused("remote forward", "remote socket forwarding is not allowed through Passport")
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        self.refused("socket forward", "socket forwarding is not allowed through Passport")
        return False


async def run_proxy_server(
    sock: Any, *, proxy: ProxyConnection, host_key: asyncssh.SSHKey, host_certificate: asyncssh.SSHCertificate,
    trusted_ca_lines: list[str],
) -> asyncssh.SSHServerConnection:  # fmt: skip
    """Run the SSH server on an already connected socket (as asyncssh.run_server, with our connection class)."""
    loop = asyncio.get_running_loop()
    options = await asyncssh.SSHServerConnectionOptions.construct(
        None,
        server_factory=lambda: ProxyServer(proxy, trusted_ca_lines),
        server_host_keys=[(host_key, host_certificate)],
        # No server configuration files, no line editor (the bytes are the instance's), binary data.
        config=[],
        line_editor=False,
        encoding=None,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_scp=False,
        login_timeout=LOGIN_GRACE_SECONDS,
        keepalive_interval=0,
    )

    def factory() -> SSHServerConnection:
        return ProxyServerConnection(loop, options, wait="auth")

    return await _connect(options, [], loop, 0, sock, factory, "Starting the Passport proxy on")
