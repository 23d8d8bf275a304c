"""What the instance's sshd says reaches the engineer's ssh as a ``passport:`` line only escaped.

asyncssh hands a peer's disconnect reason and channel-open failure reason through as they came,
and OpenSSH prints a channel's stderr raw: an OSC 52 sequence there writes the clipboard, a
newline fakes a line of Passport's own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncssh
import pytest

from terminal.proxy.forward import ForwardRelay
from terminal.proxy.relay import SessionRelay
from tests.ssmchannel.aio import async_test

HOSTILE = "no\r\npassport: your access was extended\x1b]52;c;ZWNobyBoaQ==\x07\u202e"
SHOWN = "no\\x0d\\x0apassport: your access was extended\\x1b]52;c;ZWNobyBoaQ==\\x07\\u202e"


class HostileSshd(asyncssh.SSHServer):
    """An instance's sshd that ends every login with its own words."""

    def begin_auth(self, username: str) -> bool:
        raise asyncssh.DisconnectError(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, HOSTILE)


class Proxy:
    """The one connection the relays belong to (terminal.proxy.session.ProxyConnection's part that
    ``SessionRelay`` and ``ForwardRelay`` call), whose connection to the instance is the hostile sshd's."""

    def __init__(self, instance_port: int) -> None:
        self.instance_port = instance_port
        self.relays: set[SessionRelay] = set()
        self.forwards: set[ForwardRelay] = set()
        self.forwarding_changes = 0
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coroutine: Any) -> None:
        self.tasks.append(asyncio.ensure_future(coroutine))

    async def refusal(self, what: str, **detail: object) -> str | None:
        return None  # the grant still allows a new channel

    async def upstream_ready(self) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            "127.0.0.1", self.instance_port, known_hosts=None, username="ec2-user", client_keys=None, config=[]
        )


class EngineerSide(asyncssh.SSHServer):
    """The portal's side of the engineer's ssh (terminal.proxy.server, less its login checks)."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def begin_auth(self, username: str) -> bool:
        return False

    def session_requested(self) -> SessionRelay:
        return SessionRelay(self.proxy)  # type: ignore[arg-type]

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        return ForwardRelay(self.proxy, dest_host, dest_port).open(changes_seen=0)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def engineer_through_portal() -> AsyncIterator[tuple[asyncssh.SSHClientConnection, Proxy]]:
    """The engineer's ssh, connected to the portal's side, whose instance is the hostile sshd."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    instance = await asyncssh.create_server(HostileSshd, "127.0.0.1", 0, server_host_keys=[key])
    proxy = Proxy(instance.sockets[0].getsockname()[1])
    portal = await asyncssh.create_server(
        lambda: EngineerSide(proxy), "127.0.0.1", 0, server_host_keys=[key], encoding=None
    )
    try:
        port = portal.sockets[0].getsockname()[1]
        async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="alice", config=[]) as engineer:
            yield engineer, proxy
        await asyncio.gather(*proxy.tasks)
    finally:
        portal.close()
        instance.close()


@async_test
async def test_the_sshds_disconnect_reason_is_one_escaped_line_on_the_engineers_stderr() -> None:
    async with engineer_through_portal() as (engineer, _):
        result = await engineer.run("id", encoding=None)

    assert result.exit_status == 255
    assert result.stderr == f"passport: the instance could not be reached: {SHOWN}\r\n".encode()


@async_test
async def test_a_forward_refused_for_the_same_reason_says_it_escaped() -> None:
    async with engineer_through_portal() as (engineer, _):
        with pytest.raises(asyncssh.ChannelOpenError) as refused:
            await engineer.open_connection("localhost", 22)

    assert refused.value.reason == f"The instance is not reachable: {SHOWN}"
