"""Bulk transfer both ways over SSH, for terminal_throughput.py; not a benchmark itself.

Three ways to one asyncssh connection to the host's sshd, as the grant's user:

- ``direct``:  TCP straight to the sshd on loopback (the baseline);
- ``channel``: StartSession, then asyncssh over ``ssmchannel`` in this process (the data
  channel alone, as ``terminal.bridge`` uses it);
- ``proxy``:   StartSession, then a child process running what ``passport proxy`` runs
  (``passport_cli.tunnel._proxy``: the data channel spliced to its stdin and stdout), as
  asyncssh's ``proxy_command`` (pipes, as ssh runs a ProxyCommand).

No PTY: an exec channel, so that random bytes pass unchanged. ``down`` reads ``head -c SIZE
/dev/urandom`` until SIZE bytes arrived; ``up`` writes SIZE random bytes into ``head -c SIZE
>/dev/null; echo <marker>`` and waits for the marker. Only the transfer is timed: the
connection (StartSession, WebSocket, SSH handshake) is opened before the clock starts.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _proc import cpu_ticks, process_tree
from _terminal_stack import ROOT, Stack

UP_MARKER = b"bench-up-done-42"
CHUNK = 64 * 1024
PROXY_CODE = (
    "import asyncio, sys; sys.path.insert(0, sys.argv[1]); from passport_cli.tunnel import _proxy; "
    "asyncio.run(_proxy(sys.argv[2], sys.argv[3]))"
)

Opener = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    if text[-1:].upper() in units:
        return int(float(text[:-1]) * units[text[-1:].upper()])
    return int(text)


def _ssh_options(stack: Stack, key: Any, certificates: list[str]) -> dict[str, Any]:
    import asyncssh

    assert stack.target is not None
    return {
        "username": stack.target.username,
        "client_keys": [(key, asyncssh.import_certificate(c)) for c in certificates],
        "known_hosts": None,
        "agent_path": None,
        "config": [],
        "preferred_auth": ["publickey"],
    }


def bulk_openers(stack: Stack) -> dict[str, Opener]:
    """direct, channel and proxy: each opens an asyncssh connection to the same sshd."""
    import asyncssh

    from ssmchannel import DataChannel
    from ssmchannel.tunnel import ChannelTunnel

    assert stack.target is not None
    target = stack.target
    key, certificates = stack.credentials()
    options = _ssh_options(stack, key, certificates)

    @contextlib.asynccontextmanager
    async def direct() -> AsyncIterator[Any]:
        async with asyncssh.connect("127.0.0.1", target.sshd_port, **options) as connection:
            yield connection

    async def start() -> dict[str, str]:
        from asgiref.sync import sync_to_async

        return dict(await sync_to_async(stack.start_session)())

    @contextlib.asynccontextmanager
    async def channel() -> AsyncIterator[Any]:
        started = await start()
        async with (
            DataChannel.open(started["StreamUrl"], started["TokenValue"]) as data_channel,
            # As the portal's terminal and CLI proxy connect (ssmchannel.tunnel).
            asyncssh.connect(tunnel=ChannelTunnel(data_channel), host="instance", **options) as connection,
        ):
            yield connection

    @contextlib.asynccontextmanager
    async def proxy() -> AsyncIterator[Any]:
        started = await start()
        # asyncssh runs the command with its stdin and stdout on pipes, as ssh runs a ProxyCommand.
        command = [sys.executable, "-c", PROXY_CODE, str(ROOT), started["StreamUrl"], started["TokenValue"]]
        async with asyncssh.connect("instance", proxy_command=command, **options) as connection:
            yield connection

    return {"direct": direct, "channel": channel, "proxy": proxy}


async def download(connection: Any, size: int) -> float:
    process = await connection.create_process(f"head -c {size} /dev/urandom", encoding=None)
    received = 0
    started = time.perf_counter()
    while received < size:
        data = await process.stdout.read(CHUNK)
        if not data:
            raise RuntimeError(f"the download ended after {received} of {size} bytes")
        received += len(data)
    elapsed = time.perf_counter() - started
    await process.wait()
    return elapsed


async def upload(connection: Any, size: int) -> float:
    process = await connection.create_process(f"head -c {size} >/dev/null; echo {UP_MARKER.decode()}", encoding=None)
    block = os.urandom(CHUNK)
    started = time.perf_counter()
    sent = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        process.stdin.write(piece)
        await process.stdin.drain()
        sent += len(piece)
    answer = b""
    while UP_MARKER not in answer:
        data = await process.stdout.read(CHUNK)
        if not data:
            raise RuntimeError(f"the upload got no marker back (read {answer[-80:]!r})")
        answer += data
    elapsed = time.perf_counter() - started
    await process.wait()
    return elapsed


async def _timed_with_cpu(roots: list[int], run: Awaitable[float]) -> tuple[float, list[float]]:
    """Seconds of ``run`` and the CPU seconds of each root's process tree meanwhile.

    Processes that end during the run are counted through the parent that reaps them (a gone
    pid counts minus what it had used before); processes that appear are found after the run
    (sshd forks the user's process as authentication ends, which a scan before can miss)."""
    before = [cpu_ticks(process_tree(root)) for root in roots]
    seconds = await run
    after = [cpu_ticks(list(ticks)) for ticks in before]  # before scanning /proc, which costs this process CPU
    for root, start, end in zip(roots, before, after, strict=True):
        end.update(cpu_ticks([pid for pid in process_tree(root) if pid not in start]))
    tick = os.sysconf("SC_CLK_TCK")
    return seconds, [(sum(end.values()) - sum(start.values())) / tick for start, end in zip(before, after, strict=True)]


@dataclass
class Transfer:
    seconds: float
    client_cpu: float  # this process and its children (the proxy): the client's end
    far_cpu: float  # devcloud and its children: the agent's end, sshd and the command on the host


async def measure_bulk(
    openers: dict[str, Opener], size: int, repeat: int, devcloud_pid: int
) -> dict[tuple[str, str], list[Transfer]]:
    """Each (path, direction)'s transfers, ``repeat`` rounds; the paths take turns within each round."""
    results: dict[tuple[str, str], list[Transfer]] = {}
    for round_number in range(repeat):
        for label, opener in openers.items():
            async with opener() as connection:
                for direction, run in (("down", download), ("up", upload)):
                    # The client's end: this process and its children (the proxy); the far end:
                    # devcloud and its children (the agent, the host's sshd and the command).
                    seconds, (client_cpu, far_cpu) = await _timed_with_cpu(
                        [os.getpid(), devcloud_pid], run(connection, size)
                    )
                    transfer = Transfer(seconds, client_cpu, far_cpu)
                    results.setdefault((label, direction), []).append(transfer)
                    print(
                        f"  round {round_number + 1} {label:8} {direction:4} {size / 1e6:7.1f} MB in {seconds:6.2f} s; "
                        f"CPU s: client {transfer.client_cpu:.2f}, devcloud and host {transfer.far_cpu:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    return results
