"""Session Manager data channels from the CLI: stdin/stdout for ssh's ProxyCommand, and a local port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

from passport_cli.client import Portal, field
from passport_cli.display import printable
from passport_cli.errors import CliError, Exit, Terminated
from passport_cli.local_peers import refusal
from passport_cli.signals import stop_signals_to_loop
from passport_cli.stdio import stdio_streams
from ssmchannel import ChannelError, DataChannel, splice
from ssmchannel.documents import PORT_FORWARDING_DOCUMENT, SSH_DOCUMENT
from ssmchannel.forwarding import PortForwarder
from ssmchannel.waiting import cancel_and_wait

SSH_PORT = 22


def start_session(portal: Portal, request_id: int, instance_id: str, document: str, port: int | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"document": document}
    if port is not None:
        payload["port"] = port
    session = portal.post_object(f"/api/requests/{request_id}/grants/{instance_id}/session/", payload)
    for key in ("stream_url", "token"):  # what the data channel is opened with
        field(session, key, str)
    return session


def check_forward_port(item: dict[str, Any], port: int) -> None:
    """Refuse, before listening, any forward on an account whose sessions are moderated (no approver
    could watch it), a remote port the request's account does not open, and port 22 on an account
    whose SSH sessions are recorded (only the recording proxy may reach it there).

    The portal refuses (and logs) such a session anyway, but only when a connection arrives;
    saying so once and exiting is clearer than a listener whose every connection fails. A portal
    that does not list the ports (an older one) is left to refuse by itself.
    """
    account = item.get("account")
    if isinstance(account, dict) and account.get("moderated") is True:
        raise CliError(
            f"Sessions on {printable(account.get('name', ''))} are moderated: an approver watches every session "
            "there, and a forward cannot be watched, so it is refused. Shells, commands and file transfers through "
            "Passport (passport connect, ssh with `passport ssh-config`) start once an approver joins them.",
            Exit.REFUSED,
        )
    if port == SSH_PORT and isinstance(account, dict) and account.get("cli_sessions") == "record":
        raise CliError(
            f"SSH sessions on {printable(account.get('name', ''))} are recorded: a forward to port 22 would bypass "
            "the recording and is refused. For a tunnel, use ssh -L with `passport ssh-config` "
            "(ssh -F $(passport ssh-config) -L LOCAL:HOST:PORT INSTANCE).",
            Exit.REFUSED,
        )
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


async def _proxy(stream_url: str, token: str) -> None:
    async with DataChannel.open(stream_url, token) as channel:
        reader, writer = await stdio_streams()
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


# How often an open forward asks the portal whether its request is still active (also asked
# whenever a forwarded connection ends, as it does when the portal ends the request's sessions).
WATCH_SECONDS_ENV = "PASSPORT_CONNECT_WATCH_SECONDS"
WATCH_SECONDS = 10.0


def _watch_seconds() -> float:
    try:
        return max(0.5, float(os.environ.get(WATCH_SECONDS_ENV, WATCH_SECONDS)))
    except ValueError:
        return WATCH_SECONDS


async def _forward(
    open_session: Callable[[], dict[str, Any]],
    local_port: int,
    ready: Callable[[int], None],
    ended: Callable[[], str | None] | None = None,
) -> int | str:
    """Serve until SIGTERM or SIGHUP (returns which), or until ``ended`` gives why the request
    ended (returns that reason)."""
    # SIGTERM and SIGHUP stop the listener through the loop: a Python-level handler raising here
    # could land inside a connection's task, which would keep the exception and go on serving.
    stop = asyncio.Event()
    outcome: list[int | str] = []
    check_now = asyncio.Event()

    async def open_channel() -> DataChannel:
        session = await asyncio.to_thread(open_session)
        return await DataChannel.connect(session["stream_url"], session["token"], multiplex=True)

    # One multiplexed session for every connection when the agent can (each connection a
    # stream, as RDP clients open several); otherwise one session per connection.
    forwarder = PortForwarder(open_channel)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # Another user of this machine may connect to 127.0.0.1 too: their connection would ride
            # this person's approved session, under this person's name in the Logbook.
            peer, local = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
            refused = await asyncio.to_thread(refusal, peer[:2], local[:2])
            if refused is not None:
                print(f"passport: {printable(refused)}", file=sys.stderr, flush=True)
                writer.close()
                return
            await forwarder.handle(reader, writer)
        except (ChannelError, CliError, OSError) as error:
            print(f"passport: a forwarded connection failed: {printable(error)}", file=sys.stderr)
            writer.close()
        except asyncio.CancelledError:
            # The forwarding is ending (SIGTERM, Ctrl-C): this connection closes with it. Kept, not
            # re-raised: asyncio's stream callback would log a cancelled handler as an error.
            writer.close()
            return
        check_now.set()  # a session that ends may mean the request did

    async def watch(reason_of: Callable[[], str | None]) -> None:
        every = _watch_seconds()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(check_now.wait(), every)
            check_now.clear()
            try:
                reason = await asyncio.to_thread(reason_of)
            except Exception:  # a portal that cannot answer now is asked again later
                reason = None
            if reason and not stop.is_set():
                outcome.append(reason)
                stop.set()

    def on_signal(signum: int) -> None:
        outcome.append(signum)
        stop.set()

    with stop_signals_to_loop(asyncio.get_running_loop(), on_signal):
        watcher: asyncio.Task[None] | None = None
        try:
            try:
                server = await asyncio.start_server(handle, "127.0.0.1", local_port)
            except OSError as error:  # taken, privileged, or no such address here
                why = printable(error.strerror or error)
                raise CliError(f"could not listen on 127.0.0.1:{local_port}: {why}", Exit.ERROR) from None
            async with server:
                # Only now, with the port bound: a Windows connect fetches the password in ``ready``.
                ready(int(server.sockets[0].getsockname()[1]))
                watcher = asyncio.create_task(watch(ended)) if ended is not None else None
                await stop.wait()
        finally:
            await forwarder.aclose()
    if watcher is not None:
        await cancel_and_wait(watcher)
    return outcome[0]


def run_port_forward(
    portal: Portal,
    request_id: int,
    instance_id: str,
    remote_port: int,
    local_port: int,
    ready: Callable[[int], None],
    ended: Callable[[], str | None] | None = None,
) -> str | None:
    """Forward 127.0.0.1:``local_port`` (0: a free one) to the instance's ``remote_port`` for this
    user of the machine only, where it can tell (``local_peers``), until Ctrl-C
    (KeyboardInterrupt, then it returns None), SIGTERM or SIGHUP (it raises Terminated), or until
    ``ended`` (asked every few seconds and whenever a connection ends) says why the request ended:
    then it returns that reason."""

    def open_session() -> dict[str, Any]:
        return start_session(portal, request_id, instance_id, PORT_FORWARDING_DOCUMENT, remote_port)

    with contextlib.suppress(KeyboardInterrupt):
        outcome = asyncio.run(_forward(open_session, local_port, ready, ended))
        if isinstance(outcome, str):
            return outcome
        raise Terminated(outcome)
    return None
