"""A relay that has something to say to the engineer's channel just after the portal closed the SSH
connection under it says nothing, and raises nothing.

asyncssh's ``close()`` of a connection closes every channel at once (a write then raises
BrokenPipeError) but tells each channel's session (``connection_lost``) only a loop turn later. The
CLI proxy to an instance whose agent is gone can land in that gap (test_agent_gone.py, the command):
when StartSession's failure and the command's exec request are read in the same loop turn, the
connection's ending (``ProxyConnection._end``) closes the SSH connection before the relay's opening
task first runs; the relay then finds the upstream failed and ``stop`` wrote the reason on the closed
channel. The BrokenPipeError ended that task unread, and daphne's log showed "Task exception was
never retrieved" with its traceback, which that test looks for.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh

from terminal.proxy.relay import SessionRelay
from tests.ssmchannel.aio import async_test


class Proxy:
    """The part of terminal.proxy.session.ProxyConnection a relay calls; its upstream is the test's."""

    def __init__(self) -> None:
        self.relays: set[SessionRelay] = set()
        self.tasks: list[asyncio.Task[Any]] = []
        self.upstream: asyncio.Future[asyncssh.SSHClientConnection] = asyncio.get_running_loop().create_future()

    def spawn(self, coroutine: Any) -> None:
        self.tasks.append(asyncio.ensure_future(coroutine))

    async def refusal(self, what: str, **detail: object) -> str | None:
        return None  # the grant still allows a new channel

    async def upstream_ready(self) -> asyncssh.SSHClientConnection:
        return await asyncio.shield(self.upstream)


class PortalSide(asyncssh.SSHServer):
    """The portal's side of the engineer's ssh (terminal.proxy.server, less its login checks)."""

    def __init__(self, proxy: Proxy, relays: list[SessionRelay], connections: list[Any]) -> None:
        self.proxy, self.relays, self.connections = proxy, relays, connections

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.connections.append(conn)

    def begin_auth(self, username: str) -> bool:
        return False

    def session_requested(self) -> SessionRelay:
        relay = SessionRelay(self.proxy)  # type: ignore[arg-type]
        self.relays.append(relay)
        return relay


@async_test
async def test_a_relay_stopped_in_the_turn_its_connection_was_closed_writes_nothing_and_raises_nothing() -> None:
    unread: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: unread.append(context))
    proxy = Proxy()
    relays: list[SessionRelay] = []
    connections: list[Any] = []
    key = asyncssh.generate_private_key("ssh-ed25519")
    portal = await asyncssh.create_server(
        lambda: PortalSide(proxy, relays, connections), "127.0.0.1", 0, server_host_keys=[key], encoding=None
    )
    port = portal.sockets[0].getsockname()[1]
    try:
        async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="alice", config=[]) as engineer:
            process = await engineer.create_process("echo never", encoding=None)
            while not proxy.tasks:  # the command's session started: its relay waits for the upstream
                await asyncio.sleep(0.01)
            [relay], [connection] = relays, connections

            # The connection's ending closes the SSH connection; in the same turn, before asyncssh
            # has told the channel, the relay learns the instance cannot be reached.
            connection.close()
            relay.stop("the instance could not be reached: i-0 is not connected.")

            proxy.upstream.set_exception(ConnectionError("i-0 is not connected."))
            await process.wait_closed()
            stderr = await process.stderr.read()
        await asyncio.wait_for(asyncio.gather(*proxy.tasks, return_exceptions=True), 10)
    finally:
        portal.close()

    assert b"not connected" not in stderr  # the channel was closed before the reason could go out
    assert [task.exception() for task in proxy.tasks if not task.cancelled()] == [None] * len(proxy.tasks)
    assert [context.get("message") for context in unread] == []
