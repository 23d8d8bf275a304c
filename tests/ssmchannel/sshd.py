"""A throwaway asyncssh server for the tests that run SSH over a DataChannel."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh

from devcloud.streams import Faults, StreamServer, StreamTarget


class NoAuth(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False  # these tests are about transport, not authentication


async def shout(process: asyncssh.SSHServerProcess[str]) -> None:
    """Answers with the command's name and its input in capitals."""
    text = await process.stdin.read()
    process.stdout.write(f"{process.command}: {text.upper()}")
    process.exit(0)


async def start_sshd(**kwargs: Any) -> tuple[asyncssh.SSHAcceptor, int]:
    """An SSH server on a loopback port that lets anyone in; it and its port."""
    sshd = await asyncssh.create_server(
        NoAuth, "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")], **kwargs
    )
    return sshd, sshd.sockets[0].getsockname()[1]


async def start_streams(port: int, *, faults: Faults | None = None) -> tuple[StreamServer, str]:
    """devcloud's stream server with one SSH session ``s-1`` (token ``tok``) to ``port``; it and its base URL."""
    streams = StreamServer(resolve_session={"s-1": StreamTarget(token="tok", port=port)}.get, faults=faults)
    return streams, await asyncio.to_thread(streams.start)
