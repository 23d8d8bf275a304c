"""The SSH side of a browser terminal: an ephemeral key, a portal certificate, a Session Manager
data channel (AWS-StartSSHSession) and asyncssh with a PTY over it. No Django here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh

from ssmchannel import DataChannel
from ssmchannel.tunnel import ChannelTunnel

READ_SIZE = 8192
TERM_TYPE = "xterm-256color"
# The portal's own SSH connections to instances (browser terminal, CLI proxy) ask for AES-GCM first:
# with AES-NI it costs a fraction of ChaCha20-Poly1305's CPU in the web process, which carries every byte.
ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr"]


def ephemeral_key() -> tuple[asyncssh.SSHKey, str]:
    """A fresh Ed25519 key for one session and its OpenSSH public line; the key never leaves memory."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="passport-browser-terminal")
    return key, key.export_public_key().decode().strip()


class SshBridge:
    """One PTY shell on one instance, reached through an already started Session Manager session."""

    def __init__(self, *, stream_url: str, token: str, username: str, key: asyncssh.SSHKey, certificates: list[str]):
        self._stream_url = stream_url
        self._token = token
        self._username = username
        self._key = key
        self._certificates = certificates
        # What open() started, closed in reverse order by close(). Held as they are, not in a
        # contextlib.AsyncExitStack: its deque and DataChannel.open's generator frame were
        # about 1.5 KiB of every open terminal.
        self._channel: DataChannel | None = None
        self._connection: asyncssh.SSHClientConnection | None = None
        self._process: asyncssh.SSHClientProcess[bytes] | None = None

    async def open(self, *, cols: int, rows: int) -> None:
        try:
            self._channel = channel = await DataChannel.connect(self._stream_url, self._token)
            client_keys: list[Any] = [
                (self._key, asyncssh.import_certificate(certificate)) for certificate in self._certificates
            ]
            connection = await asyncssh.connect(
                # Straight over the channel: no socketpair, no copying tasks (ssmchannel.tunnel).
                tunnel=ChannelTunnel(channel),
                host="instance",
                username=self._username,
                client_keys=client_keys,
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
        if self._process is not None and not self._process.stdin.is_closing():
            self._process.stdin.write(data)

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
