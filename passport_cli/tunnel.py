"""Session Manager data channels from the CLI: stdin/stdout for ssh's ProxyCommand, and a local port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from passport_cli.client import Portal
from passport_cli.display import printable
from passport_cli.errors import CliError, Exit, Terminated
from ssmchannel import ChannelError, DataChannel, splice
from ssmchannel.documents import PORT_FORWARDING_DOCUMENT, SSH_DOCUMENT


def start_session(portal: Portal, request_id: int, instance_id: str, document: str, port: int | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"document": document}
    if port is not None:
        payload["port"] = port
    session: dict[str, Any] = portal.post(f"/api/requests/{request_id}/grants/{instance_id}/session/", payload)
    return session


def check_forward_port(item: dict[str, Any], port: int) -> None:
    """Refuse, before listening, a remote port the request's account does not open.

    The portal refuses (and logs) such a session anyway, but only when a connection arrives;
    saying so once and exiting is clearer than a listener whose every connection fails. A portal
    that does not list the ports (an older one) is left to refuse by itself.
    """
    account = item.get("account")
    ports = account.get("forward_ports") if isinstance(account, dict) else None
    if not isinstance(ports, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports):
        return
    if port not in ports:
        assert isinstance(account, dict)
        listed = ", ".join(str(p) for p in ports)
        raise CliError(
            f"Port {port} is not open for sessions on {printable(account.get('name', ''))}: "
            f"the allowed ports are {listed}. An administrator can add ports to the account.",
            Exit.REFUSED,
        )


async def _stdio_streams() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(1, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


async def _proxy(stream_url: str, token: str) -> None:
    async with DataChannel.open(stream_url, token) as channel:
        reader, writer = await _stdio_streams()
        await splice(channel, reader, writer)


def run_proxy(portal: Portal, request_id: int, instance_id: str, port: int | None) -> None:
    """ssh's ProxyCommand: this process's stdin/stdout become the instance's port 22 (or ``port``)."""
    session = start_session(portal, request_id, instance_id, SSH_DOCUMENT, port)
    try:
        asyncio.run(_proxy(session["stream_url"], session["token"]))
    except (ChannelError, OSError) as error:
        raise CliError(f"The session to {instance_id} failed: {printable(error)}", Exit.ERROR) from error
    except Exception as error:
        # The transport's own errors (a WebSocket closed mid-frame...): one line, not a traceback
        # across the terminal ssh has in raw mode.
        raise CliError(f"The session to {instance_id} ended: {type(error).__name__}", Exit.ERROR) from error


async def _forward(open_session: Callable[[], dict[str, Any]], local_port: int, ready: Callable[[int], None]) -> int:
    """Serve until SIGTERM or SIGHUP; returns which."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One session per connection: a Session Manager channel carries one stream.
        try:
            session = await asyncio.to_thread(open_session)
            async with DataChannel.open(session["stream_url"], session["token"]) as channel:
                await splice(channel, reader, writer)
        except (ChannelError, CliError, OSError) as error:
            print(f"passport: a forwarded connection failed: {printable(error)}", file=sys.stderr)
            writer.close()
        except asyncio.CancelledError:
            # The forwarding is ending (SIGTERM, Ctrl-C): this connection closes with it. Kept, not
            # re-raised: asyncio's stream callback would log a cancelled handler as an error.
            writer.close()

    # SIGTERM and SIGHUP stop the listener through the loop: a Python-level handler raising here
    # could land inside a connection's task, which would keep the exception and go on serving.
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, on_signal, signum)
    server = await asyncio.start_server(handle, "127.0.0.1", local_port)
    port = int(server.sockets[0].getsockname()[1])
    ready(port)
    async with server:
        await stop.wait()
    return received[0]


def run_port_forward(
    portal: Portal, request_id: int, instance_id: str, remote_port: int, local_port: int, ready: Callable[[int], None]
) -> None:
    """Forward 127.0.0.1:``local_port`` (0: a free one) to the instance's ``remote_port`` until Ctrl-C
    (KeyboardInterrupt, then it returns), SIGTERM or SIGHUP (it raises Terminated)."""

    def open_session() -> dict[str, Any]:
        return start_session(portal, request_id, instance_id, PORT_FORWARDING_DOCUMENT, remote_port)

    with contextlib.suppress(KeyboardInterrupt):
        raise Terminated(asyncio.run(_forward(open_session, local_port, ready)))
