"""The shells the terminal benchmarks compare, on a ``Stack`` (_terminal_stack.py); not a benchmark itself.

Three ways to the same thing, a PTY shell as the grant's short-lived user, on the same sshd,
with one Ed25519 key and the portal's certificate for it:

- ``DirectShell``: asyncssh straight to the host's sshd on loopback (the baseline);
- ``ChannelShell``: StartSession, then asyncssh over the data channel (``terminal.bridge.SshBridge``,
  which the browser terminal uses too), with no Django on the path;
- ``BrowserShell``: what the browser does: a signed-in session cookie (``Portal``), the terminal
  page for a one-time ticket, then the terminal WebSocket of the daphne process, with its Origin header.

``Screen`` reads a shell's output and times how long a pattern takes to appear after sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from _terminal_stack import COLS, LOGIN, PASSWORD, READ_SIZE, ROWS, Stack, fail


class Portal:
    """The portal as a browser sees it: a signed-in session, terminal pages and their tickets."""

    def __init__(self, base_url: str, grant_id: int, *, login: str = LOGIN, password: str = PASSWORD) -> None:
        import requests

        self.base_url = base_url
        self.grant_id = grant_id
        self.origin = base_url
        session = requests.Session()
        login_url = f"{base_url}/accounts/login/"
        page = session.get(login_url, timeout=30)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if page.status_code != 200 or not match:
            raise fail(f"no sign-in form at {login_url} (HTTP {page.status_code})")
        session.post(
            login_url,
            data={"login": login, "password": password, "csrfmiddlewaretoken": match.group(1)},
            headers={"Referer": login_url, "Origin": base_url},
            timeout=30,
        )
        if "sessionid" not in session.cookies:
            raise fail(f"signing in as {login} did not give a session cookie")
        self.cookie = f"sessionid={session.cookies['sessionid']}"

    def ticket(self) -> str:
        """GET the terminal page, as opening it in a tab does, and read its one-time ticket."""
        import requests

        page = requests.get(f"{self.base_url}/terminal/{self.grant_id}/", headers={"Cookie": self.cookie}, timeout=60)
        match = re.search(r'data-ticket="([^"]+)"', page.text)
        if page.status_code != 200 or not match:
            raise RuntimeError(f"the terminal page gave no ticket (HTTP {page.status_code})")
        return match.group(1)

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + f"/ws/terminal/{self.grant_id}/"


def stack_portal(stack: Stack) -> Portal:
    """The portal of a stack started with ``web=True``, as its benchmark person's browser sees it."""
    assert stack.web and stack.target is not None
    return Portal(stack.base_url, stack.target.grant_id)


# --- shells -------------------------------------------------------------------------------
Deliver = Callable[[bytes], Awaitable[None]]


class Shell(Protocol):
    async def open(self) -> None: ...
    async def send(self, data: bytes) -> None: ...
    async def pump(self, deliver: Deliver) -> None: ...
    async def close(self) -> None: ...


class DirectShell:
    """asyncssh to the host's sshd on loopback, a PTY shell like the terminal's: the baseline."""

    def __init__(self, *, port: int, username: str, key: Any, certificates: list[str]) -> None:
        self.port, self.username, self.key, self.certificates = port, username, key, certificates
        self.connection: Any = None
        self.process: Any = None

    async def open(self) -> None:
        import asyncssh

        self.connection = await asyncssh.connect(
            "127.0.0.1",
            self.port,
            username=self.username,
            client_keys=[(self.key, asyncssh.import_certificate(c)) for c in self.certificates],
            known_hosts=None,
            agent_path=None,
            config=[],
            preferred_auth=["publickey"],
        )
        self.process = await self.connection.create_process(
            term_type="xterm-256color", term_size=(COLS, ROWS), encoding=None, stderr=asyncssh.STDOUT
        )

    async def send(self, data: bytes) -> None:
        self.process.stdin.write(data)

    async def pump(self, deliver: Deliver) -> None:
        while data := await self.process.stdout.read(READ_SIZE):
            await deliver(data)

    async def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.wait_closed(), 5)


class ChannelShell:
    """StartSession through the portal's service, then terminal.bridge.SshBridge: data channel + asyncssh."""

    def __init__(self, *, stack: Stack, key: Any, certificates: list[str]) -> None:
        self.stack, self.key, self.certificates = stack, key, certificates
        self.bridge: Any = None

    async def open(self) -> None:
        from asgiref.sync import sync_to_async

        from terminal.bridge import LoginKeys, SshBridge, Validity

        async def no_fallback(public_key: str, validity: Validity | None) -> list[str]:
            raise RuntimeError("the benchmark's hosts take Ed25519")

        assert self.stack.target is not None
        started = await sync_to_async(self.stack.start_session)()
        self.bridge = SshBridge(
            stream_url=started["StreamUrl"],
            token=started["TokenValue"],
            username=self.stack.target.username,
            keys=LoginKeys.certified(self.key, self.certificates, no_fallback),
        )
        await self.bridge.open(cols=COLS, rows=ROWS)

    async def send(self, data: bytes) -> None:
        self.bridge.write(data)

    async def pump(self, deliver: Deliver) -> None:
        await self.bridge.pump_output(deliver)

    async def close(self) -> None:
        if self.bridge is not None:
            await self.bridge.close()


class BrowserShell:
    """The terminal WebSocket of the web process, reached the way xterm.js reaches it."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.websocket: Any = None
        self.closed_reason = ""

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        ticket = await asyncio.to_thread(self.portal.ticket)
        self.websocket = await connect(
            f"{self.portal.ws_url}?ticket={ticket}",
            additional_headers={"Cookie": self.portal.cookie, "Origin": self.portal.origin},
            max_size=None,
            open_timeout=60,
        )
        await self.websocket.send(json.dumps({"v": 1, "type": "resize", "cols": COLS, "rows": ROWS}))
        while True:  # status messages until the shell runs
            message = await self.websocket.recv()
            if isinstance(message, str):
                kind = json.loads(message)
                if kind.get("type") == "ready":
                    return
                if kind.get("type") == "closed":
                    raise RuntimeError(f"the terminal closed: {kind.get('reason')}")

    async def send(self, data: bytes) -> None:
        await self.websocket.send(data)

    async def pump(self, deliver: Deliver) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in self.websocket:
                if isinstance(message, bytes):
                    await deliver(message)
                elif json.loads(message).get("type") == "closed":
                    self.closed_reason = json.loads(message).get("reason", "")
                    return
        except ConnectionClosed as exc:
            self.closed_reason = f"the WebSocket closed: {exc}"

    async def close(self) -> None:
        if self.websocket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(), 10)


class Screen:
    """Reads one shell's output in the background; ``exchange`` sends bytes and times a pattern's arrival."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.received = 0
        self.ended = False
        self._pattern = b""
        self._tail = b""
        self._found = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self, timeout: float = 90) -> Screen:
        await asyncio.wait_for(self.shell.open(), timeout)
        self._task = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        try:
            await self.shell.pump(self._deliver)
        finally:
            self.ended = True
            self._found.set()

    async def _deliver(self, data: bytes) -> None:
        self.received += len(data)
        if self._pattern:
            window = self._tail + data
            if self._pattern in window:
                self._pattern = b""
                self._found.set()
                return
            keep = len(self._pattern) - 1
            self._tail = window[-keep:] if keep else b""

    async def exchange(self, data: bytes, pattern: bytes, timeout: float = 60) -> tuple[float, int]:
        """Send ``data``; seconds until ``pattern`` arrived and the bytes received meanwhile."""
        self._pattern, self._tail = pattern, b""
        self._found.clear()
        before = self.received
        started = time.perf_counter()
        await self.shell.send(data)
        try:
            await asyncio.wait_for(self._found.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(f"no {pattern!r} within {timeout} s") from None
        elapsed = time.perf_counter() - started
        if self._pattern:
            reason = getattr(self.shell, "closed_reason", "")
            raise RuntimeError(f"the shell ended before {pattern!r} arrived" + (f": {reason}" if reason else ""))
        return elapsed, self.received - before

    async def ready(self) -> None:
        """Wait until the shell answers (the prompt may still be on its way after login)."""
        await self.exchange(b"echo bench-$((20+1))\r", b"bench-21")

    async def close(self) -> None:
        await self.shell.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def path_shells(stack: Stack, *, browser: bool) -> dict[str, Callable[[], Shell]]:
    """The paths every terminal benchmark compares: direct ssh, the data channel alone, the browser."""
    assert stack.target is not None
    target = stack.target
    key, certificates = stack.credentials()
    shells: dict[str, Callable[[], Shell]] = {
        "direct": lambda: DirectShell(
            port=target.sshd_port, username=target.username, key=key, certificates=certificates
        ),
        "channel": lambda: ChannelShell(stack=stack, key=key, certificates=certificates),
    }
    if browser:
        portal = stack_portal(stack)
        shells["browser"] = lambda: BrowserShell(portal)
    return shells


def run_measuring(stack: Stack, measurement: Awaitable[Any]) -> Any:
    """Run one measurement; when it fails, show the web process's log with the error."""
    try:
        return asyncio.run(measurement)  # type: ignore[arg-type]
    except Exception:
        if stack.web:
            print(f"--- daphne log (tail) ---\n{stack.daphne_log()}", file=sys.stderr)
        raise
