"""The SSH side of a browser terminal: ephemeral keys, portal certificates, a Session Manager
data channel (AWS-StartSSHSession) and asyncssh with a PTY over it. No Django here.

The portal logs in with an Ed25519 key first and, only when the instance refuses it (an sshd
that takes no Ed25519: RHEL in FIPS mode, an admin's PubkeyAcceptedAlgorithms, an old OpenSSH),
with an RSA key in the same connection (``LoginKeys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncssh
from asyncssh.public_key import SSHOpenSSHCertificate
from cryptography.hazmat.primitives import serialization

from ssmchannel import DataChannel
from ssmchannel.tunnel import ChannelTunnel

logger = logging.getLogger(__name__)

READ_SIZE = 8192
TERM_TYPE = "xterm-256color"
# The portal's own SSH connections to instances (browser terminal, CLI proxy) ask for AES-GCM first:
# with AES-NI it costs a fraction of ChaCha20-Poly1305's CPU in the web process, which carries every byte.
ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr"]


# The fallback key: made only when an instance refused the Ed25519 one (some 0.1-0.5 s, off the loop).
RSA_KEY_BITS = 3072

Validity = tuple[datetime, datetime]
# Certificates for a public key line; with a validity (from, until), that window exactly.
CertificateIssuer = Callable[[str, Validity | None], Awaitable[list[str]]]


def ephemeral_key(key_type: str = "ssh-ed25519") -> tuple[asyncssh.SSHKey, str]:
    """A fresh key for one session and its OpenSSH public line; the key never leaves memory."""
    options: dict[str, Any] = {"key_size": RSA_KEY_BITS} if key_type == "ssh-rsa" else {}
    key = asyncssh.generate_private_key(key_type, comment="passport-portal", **options)
    return key, key.export_public_key().decode().strip()


class LoginKeys:
    """The keys the portal offers an instance's sshd, in one connection: Ed25519 first, then RSA.

    ``prepare`` makes the Ed25519 key and has it certified (before any session starts, so a
    refusal is said early). The RSA key is made, and certified with exactly the Ed25519
    certificate's principal, validity and extensions (one grant, one window: ``issue`` is given
    that window), only when sshd has refused the Ed25519 one: its certificates come SHA-2 signed
    first, then SHA-1 (``ssh-rsa-cert-v01``) for servers older than OpenSSH 7.2. Keys stay in memory.
    """

    def __init__(self, issue: CertificateIssuer) -> None:
        self._issue = issue
        self._first: list[tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]] = []
        self._validity: Validity | None = None
        self._fell_back = False
        # Why the fallback could not offer its key (its certificate refused): said instead of sshd's refusal.
        self.fallback_error: Exception | None = None
        # The SHA256 fingerprints of the CA keys that signed its certificates: should one be retired,
        # the connection it logged in is ended (sshd does not re-check it).
        self.signers: set[str] = set()

    @classmethod
    def certified(cls, key: asyncssh.SSHKey, certificates: list[str], issue: CertificateIssuer) -> LoginKeys:
        """Keys whose first certificates were issued already (benchmarks)."""
        keys = cls(issue)
        keys._take(key, certificates)
        return keys

    async def prepare(self) -> None:
        key, public_key = ephemeral_key()
        self._take(key, await self._issue(public_key, None))

    def _take(self, key: asyncssh.SSHKey, certificates: list[str]) -> None:
        if not certificates:
            raise ValueError("no certificate was issued for the key")
        self._first = [(key, self._certificate(line)) for line in certificates]
        # The window the fallback's certificates get: this one's, read back as OpenSSH encoded it.
        parsed = serialization.load_ssh_public_identity(certificates[0].strip().encode())
        assert isinstance(parsed, serialization.SSHCertificate)
        self._validity = (
            datetime.fromtimestamp(parsed.valid_after, UTC),
            datetime.fromtimestamp(parsed.valid_before, UTC),
        )

    @property
    def used_rsa(self) -> bool:
        return self._fell_back and self.fallback_error is None

    def connect_options(self) -> dict[str, Any]:
        """``client_keys`` and ``client_factory`` for ``asyncssh.connect``."""
        assert self._first, "prepare() first"
        return {"client_keys": list(self._first), "client_factory": lambda: _FallbackClient(self)}

    async def fallback(self) -> list[tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]] | None:
        """The RSA key and its certificates, once; None after that (or if they could not be had)."""
        if self._fell_back or self._validity is None:
            return None
        self._fell_back = True
        logger.info("the instance refused the Ed25519 key: offering an RSA key")
        try:
            key, public_key = await asyncio.to_thread(ephemeral_key, "ssh-rsa")
            lines = await self._issue(public_key, self._validity)
        except Exception as exc:
            self.fallback_error = exc
            return None
        return [(key, self._certificate(line)) for line in lines]

    def _certificate(self, line: str) -> asyncssh.SSHCertificate:
        certificate = asyncssh.import_certificate(line)
        if isinstance(certificate, SSHOpenSSHCertificate):  # as Passport's CA signs them, always
            self.signers.add(certificate.signing_key.get_fingerprint("sha256"))
        return certificate

    def raise_fallback_error(self, refused: BaseException) -> None:
        """After sshd refused every key: the fallback's own failure, if it had one, is the reason."""
        if self.fallback_error is not None:
            raise self.fallback_error from refused


class _FallbackClient(asyncssh.SSHClient):
    """asyncssh asks its client for more keys once those given to connect() were all refused."""

    def __init__(self, keys: LoginKeys) -> None:
        self._keys = keys

    async def public_key_auth_requested(self) -> Any:
        return await self._keys.fallback()


async def connect_with(keys: LoginKeys, **options: Any) -> asyncssh.SSHClientConnection:
    """``asyncssh.connect`` offering ``keys``; the fallback's failure, if any, is what is raised."""
    try:
        return await asyncssh.connect(**keys.connect_options(), **options)
    except asyncssh.PermissionDenied as refused:
        keys.raise_fallback_error(refused)
        raise


class SshBridge:
    """One PTY shell on one instance, reached through an already started Session Manager session."""

    def __init__(self, *, stream_url: str, token: str, username: str, keys: LoginKeys):
        self._stream_url = stream_url
        self._token = token
        self._username = username
        self._keys = keys
        # What open() started, closed in reverse order by close(). Held as they are, not in a
        # contextlib.AsyncExitStack: its deque and DataChannel.open's generator frame were
        # about 1.5 KiB of every open terminal.
        self._channel: DataChannel | None = None
        self._connection: asyncssh.SSHClientConnection | None = None
        self._process: asyncssh.SSHClientProcess[bytes] | None = None

    async def open(self, *, cols: int, rows: int) -> None:
        try:
            self._channel = channel = await DataChannel.connect(self._stream_url, self._token)
            connection = await connect_with(
                self._keys,
                # Straight over the channel: no socketpair, no copying tasks (ssmchannel.tunnel).
                tunnel=ChannelTunnel(channel),
                host="instance",
                username=self._username,
                # The data channel is authenticated by AWS and leads to this instance only; its host key
                # is not known in advance.
                known_hosts=None,
                agent_path=None,
                config=[],
                preferred_auth=["publickey"],
                encryption_algs=ENCRYPTION_ALGS,
            )
            self._connection = connection
            self._process = await connection.create_process(
                term_type=TERM_TYPE, term_size=(cols, rows), encoding=None, stderr=asyncssh.STDOUT
            )
        except BaseException:
            await self.close()
            raise

    @staticmethod
    async def _close_connection(connection: asyncssh.SSHClientConnection) -> None:
        connection.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.wait_closed(), 3)

    async def pump_output(self, deliver: Callable[[bytes], Awaitable[None]]) -> None:
        """Hand every chunk of the shell's output to ``deliver`` until the shell ends."""
        assert self._process is not None
        while True:
            data = await self._process.stdout.read(READ_SIZE)
            if not data:
                return
            await deliver(data)

    def write(self, data: bytes) -> None:
        """Input for the shell. Never waits: what the instance's SSH window does not take yet waits
        in asyncssh, in this process, and the caller bounds it (``input_sent``, terminal.flow)."""
        if self._process is not None and not self._process.stdin.is_closing():
            self._process.stdin.write(data)

    async def input_sent(self) -> None:
        """Return once little of the input written still waits here (at most asyncssh's low-water
        mark, 16 KiB), or the shell is gone."""
        if self._process is not None:
            with contextlib.suppress(Exception):  # the connection lost: nothing waits any more
                await self._process.stdin.drain()

    def resize(self, cols: int, rows: int) -> None:
        if self._process is not None:
            self._process.change_terminal_size(cols, rows)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._close(), 5)

    async def _close(self) -> None:
        """The SSH connection, then the data channel (terminated), even when the first fails, as an
        exit stack would; safe to call again."""
        connection, channel = self._connection, self._channel
        self._connection = self._channel = None
        try:
            if connection is not None:
                await self._close_connection(connection)
        finally:
            if channel is not None:
                await channel.close(terminate=True)
