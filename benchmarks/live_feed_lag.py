"""Live feed lag: how much later a watcher of a browser terminal sees the person's output than the person.

    .venv/bin/python benchmarks/live_feed_lag.py [--samples 100] [--warmup 5] [--pause 0.1]

The person (bench-alice) opens the browser terminal as xterm.js does (_terminal_shells.BrowserShell:
sign-in, the page's ticket, the terminal WebSocket of daphne); the grant's approver (bench-approver)
signs in too and opens the watcher's WebSocket, ``/ws/watch/<session>/`` (terminal.watch), on the
same daphne, acknowledging its flow-control marks as the watch page does. Then, one at a time, the
person types ``echo mark-$((i*7))``, and the benchmark waits until the line ``mark-<i*7>`` has
reached both sockets. Each side's time is from the keystrokes sent to that line's arrival; the
person's is the baseline, the watcher's adds the live feed (terminal.live_output batches output
every BATCH_SECONDS and publishes it through the Redis channel layer to the watch group). Prints
median, p95 and max in milliseconds for each side, the watcher's lag behind the person (the
difference, sample by sample), and watcher / person for the median and p95.

Needs root, OpenSSH, PostgreSQL and Redis on 127.0.0.1 (scripts/services starts them); uses the
database and Redis db of benchmarks/_terminal_stack.py (PASSPORT_BENCH_DB, PASSPORT_BENCH_REDIS_URL).
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _terminal_shells import BrowserShell, Deliver, Portal, run_measuring, stack_portal
from _terminal_stack import APPROVER, Stack, fail, ratio, require_environment
from terminal_latency import percentile

APPROVER_PASSWORD = "bench-approver-password"  # noqa: S105 - a throwaway account in a throwaway database
TAIL = 64  # bytes of earlier output kept, so a line split between two frames is still found


class Arrivals:
    """One socket's output as it is read: when each awaited line first arrived (perf_counter)."""

    def __init__(self) -> None:
        self._tail = b""
        self._waiting: dict[bytes, asyncio.Future[float]] = {}

    def expect(self, pattern: bytes) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[pattern] = future
        return future

    async def deliver(self, data: bytes) -> None:
        now = time.perf_counter()
        window = self._tail + data
        for pattern, future in list(self._waiting.items()):
            if pattern in window:
                del self._waiting[pattern]
                if not future.done():
                    future.set_result(now)
        self._tail = window[-TAIL:]

    def ended(self, why: str) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(RuntimeError(why))
        self._waiting.clear()


class WatchSocket:
    """The watcher's WebSocket as the watch page opens it: signed-in cookie, Origin, acks its marks."""

    def __init__(self, portal: Portal, session_id: int) -> None:
        self.portal, self.session_id = portal, session_id
        self.websocket: Any = None
        self.closed_reason = ""

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        url = self.portal.base_url.replace("http://", "ws://") + f"/ws/watch/{self.session_id}/"
        self.websocket = await connect(
            url,
            additional_headers={"Cookie": self.portal.cookie, "Origin": self.portal.origin},
            max_size=None,
            open_timeout=60,
        )
        while True:  # the screen so far starts with a reset
            message = await asyncio.wait_for(self.websocket.recv(), 60)
            if isinstance(message, str):
                kind = json.loads(message).get("type")
                if kind == "reset":
                    return
                if kind == "closed":
                    raise RuntimeError(f"the watch closed: {json.loads(message).get('reason')}")

    async def pump(self, deliver: Deliver) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in self.websocket:
                if isinstance(message, bytes):
                    await deliver(message)
                    continue
                envelope = json.loads(message)
                if envelope.get("type") == "mark":
                    await self.websocket.send(json.dumps({"v": 1, "type": "ack", "id": envelope["id"]}))
                elif envelope.get("type") == "closed":
                    self.closed_reason = envelope.get("reason", "")
                    return
        except ConnectionClosed as exc:
            self.closed_reason = f"the WebSocket closed: {exc}"

    async def close(self) -> None:
        if self.websocket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(), 10)


def _open_session_id(grant_id: int) -> int | None:
    from django.db import close_old_connections

    from terminal.models import TerminalSession

    close_old_connections()
    found = TerminalSession.objects.filter(grant_id=grant_id, ended_at__isnull=True).order_by("-pk").first()
    return None if found is None else found.pk


async def _reading(pump: Any, arrivals: Arrivals, what: str) -> None:
    try:
        await pump(arrivals.deliver)
    finally:
        arrivals.ended(f"the {what}'s socket closed")


async def measure(stack: Stack, approver: Portal, samples: int, warmup: int, pause: float) -> dict[str, list[float]]:
    from asgiref.sync import sync_to_async

    assert stack.target is not None
    person, seen = BrowserShell(stack_portal(stack)), Arrivals()
    watch: WatchSocket | None = None
    tasks: list[asyncio.Task[None]] = []
    times: dict[str, list[float]] = {"person": [], "watcher": [], "lag": []}
    try:
        await asyncio.wait_for(person.open(), 90)
        tasks.append(asyncio.create_task(_reading(person.pump, seen, "person")))
        answered = seen.expect(b"bench-21")
        await person.send(b"echo bench-$((20+1))\r")
        await asyncio.wait_for(answered, 60)
        session_id = None
        for _ in range(100):
            session_id = await sync_to_async(_open_session_id)(stack.target.grant_id)
            if session_id is not None:
                break
            await asyncio.sleep(0.1)
        if session_id is None:
            raise RuntimeError("the person's terminal has no open TerminalSession row")
        watch, watched = WatchSocket(approver, session_id), Arrivals()
        await watch.open()
        tasks.append(asyncio.create_task(_reading(watch.pump, watched, "watcher")))
        for n in range(warmup + samples):
            pattern = f"mark-{(n + 1) * 7}\r\n".encode()
            on_person, on_watcher = seen.expect(pattern), watched.expect(pattern)
            started = time.perf_counter()
            await person.send(f"echo mark-$(({n + 1}*7))\r".encode())
            person_at = await asyncio.wait_for(on_person, 30)
            watcher_at = await asyncio.wait_for(on_watcher, 30)
            if n >= warmup:
                times["person"].append(person_at - started)
                times["watcher"].append(watcher_at - started)
                times["lag"].append(watcher_at - person_at)
            await asyncio.sleep(pause)  # the prompt comes back, as between two commands typed
    finally:
        for shell in (watch, person):
            if shell is not None:
                await shell.close()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return times


def _approver_signed_in(stack: Stack) -> Portal:
    """The grant's approver, with a password now, signed in on the login form as a browser is."""
    from accounts.models import User

    assert stack.target is not None
    approver = User.objects.get(username=APPROVER)
    approver.set_password(APPROVER_PASSWORD)
    approver.save(update_fields=["password"])
    return Portal(stack.base_url, stack.target.grant_id, login=APPROVER, password=APPROVER_PASSWORD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100, help="timed outputs (echo lines)")
    parser.add_argument("--warmup", type=int, default=5, help="outputs before timing starts")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between one output and the next command")
    args = parser.parse_args()
    if args.samples < 1 or args.warmup < 0 or args.pause < 0:
        raise fail("--samples must be at least 1, --warmup and --pause not negative")
    require_environment(web=True)

    with Stack(web=True) as stack:
        from terminal.live_output import BATCH_SECONDS

        approver = _approver_signed_in(stack)
        times = run_measuring(stack, measure(stack, approver, args.samples, args.warmup, args.pause))

    print(
        f"\nlive feed lag, {args.samples} outputs (after {args.warmup} untimed), milliseconds from the command "
        f"sent to its output line (the feed batches every {BATCH_SECONDS * 1000:.0f} ms)"
    )
    print(f"{'side':10} {'median':>8} {'p95':>8} {'max':>8} {'median vs person':>17} {'p95 vs person':>14}")
    base = times["person"]
    for label in ("person", "watcher"):
        values = times[label]
        median, p95 = statistics.median(values), percentile(values, 0.95)
        print(
            f"{label:10} {median * 1000:8.2f} {p95 * 1000:8.2f} {max(values) * 1000:8.2f} "
            f"{ratio(median, statistics.median(base)):>17} {ratio(p95, percentile(base, 0.95)):>14}"
        )
    lag = times["lag"]
    print(
        f"{'lag':10} {statistics.median(lag) * 1000:8.2f} {percentile(lag, 0.95) * 1000:8.2f} "
        f"{max(lag) * 1000:8.2f}   (the watcher's arrival minus the person's, sample by sample)"
    )


if __name__ == "__main__":
    main()
