"""How many browser terminals one web process holds, and what each costs it, against the same
number of direct ssh sessions measured in the same run.

    .venv/bin/python benchmarks/terminal_concurrency.py [--steps 10,25,50,100,200] [--max 200] [--parallel 8]
    .venv/bin/python benchmarks/terminal_concurrency.py --steps 100,500,1000 --max 1000   # the issue's 1,000

Terminals are opened in batches up to each step's total (``--parallel`` at a time, below
sshd's MaxStartups of 10) and stay open; each runs ``echo`` once and must answer. The web
process is one daphne serving the portal, reached as a browser reaches it (session cookie,
Origin, a one-time ticket from the terminal page per terminal). Escalation stops at the
first step where a terminal fails to open or answer. At the end every terminal still open
must answer again: that count is "held".

Baseline: the same steps with direct asyncssh sessions (PTY shell, same user, same sshd on
loopback) from this benchmark's own process. Memory is the growth of the resident set:
daphne's for the browser path, this process's for the direct sessions; devcloud's agent
(the far end of every data channel) is shown for information. Per-terminal figures divide
the growth since before the first batch by the number open.

The soft limit on open files is raised (to the hard limit at most) for the steps asked, and
inherited by daphne, devcloud and the direct client.

Needs root, OpenSSH, PostgreSQL and Redis on 127.0.0.1 (scripts/services starts them); uses
the database passport_bench_term and Redis db 12, or PASSPORT_BENCH_DB and PASSPORT_BENCH_REDIS_URL
(see benchmarks/_terminal_stack.py).
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _heap import HeapProbe
from _heap import report as heap_report
from _terminal_shells import BrowserShell, DirectShell, Screen, Shell, stack_portal
from _terminal_stack import Stack, ratio, require_environment, rss_kib


@dataclass
class Step:
    total: int  # terminals meant to be open after this batch
    opened: int  # terminals open after it
    seconds: float  # time to open the batch
    rss_kib: int  # the measured process after it
    agent_rss_kib: int  # devcloud's process after it
    failure: str = ""


async def _open_one(make: Callable[[], Shell], index: int) -> Screen:
    screen = await Screen(make()).open(timeout=120)
    try:
        await screen.exchange(f"echo held-$((6*7))-{index}\r".encode(), f"held-42-{index}".encode(), timeout=60)
    except BaseException:
        await screen.close()
        raise
    return screen


async def escalate(
    make: Callable[[], Shell], steps: list[int], parallel: int, pid: int, agent_pid: int, heap: HeapProbe | None = None
) -> tuple[int, list[Step], int, int]:
    """Open terminals step by step; returns the RSS before, the steps, and how many still answer at the end.

    With ``heap``, the measured process traces its heap from after the warm-up terminal and
    writes a snapshot after each batch (read after its RSS, so a snapshot's own cost is not in it).
    """
    screens: list[Screen] = []
    gate = asyncio.Semaphore(parallel)

    async def gated(index: int) -> Screen:
        async with gate:
            return await _open_one(make, index)

    # One terminal opened and closed first: lazy imports and first-use caches are not per-terminal costs.
    await (await _open_one(make, -1)).close()
    if heap is not None:
        heap.start()
    gc.collect()
    await asyncio.sleep(1)
    before = rss_kib(pid)
    results: list[Step] = []
    try:
        for total in steps:
            started = time.perf_counter()
            outcomes = await asyncio.gather(
                *(gated(index) for index in range(len(screens), total)), return_exceptions=True
            )
            seconds = time.perf_counter() - started
            failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
            screens.extend(outcome for outcome in outcomes if isinstance(outcome, Screen))
            gc.collect()
            await asyncio.sleep(1)  # let the last sessions' buffers settle before reading RSS
            failure = f"{len(failures)} failed, first: {failures[0]!r}"[:200] if failures else ""
            results.append(Step(total, len(screens), seconds, rss_kib(pid), rss_kib(agent_pid), failure))
            if heap is not None:
                await heap.snapshot(len(screens))
            print(
                f"  {total:4} wanted, {len(screens):4} open, batch in {seconds:6.2f} s"
                + (f"  ({failure})" if failure else ""),
                file=sys.stderr,
                flush=True,
            )
            if failures:
                break
        answers = await asyncio.gather(
            *(screen.exchange(b"echo still-$((50+1))\r", b"still-51", timeout=60) for screen in screens),
            return_exceptions=True,
        )
        lost = [answer for answer in answers if isinstance(answer, BaseException)]
        held = len(answers) - len(lost)
        if lost:
            print(f"  {len(lost)} did not answer at the end, first: {lost[0]!r}", file=sys.stderr, flush=True)
    finally:
        for start in range(0, len(screens), 20):
            await asyncio.gather(*(screen.close() for screen in screens[start : start + 20]))
    return before, results, held, len(screens)


# Descriptors per open terminal in the busiest process (daphne: the browser's WebSocket, the data
# channel's, a socketpair; devcloud: the data channel, the sshd connection, the agent's side).
FDS_PER_TERMINAL = 8


def raise_open_files(terminals: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE (inherited by daphne, devcloud and the direct client)."""
    needed = terminals * FDS_PER_TERMINAL + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        print(f"open files limited to {target} (the hard limit): {terminals} terminals may not open", file=sys.stderr)


def report(label: str, before: int, steps: list[Step], held: int, opened: int) -> None:
    print(f"\n{label}: {held} of {opened} open terminals still answered at the end")
    print(f"{'open':>5} {'batch s':>8} {'s/terminal':>11} {'RSS MiB':>8} {'KiB/terminal':>13} {'agent MiB':>10}")
    previous = 0
    for step in steps:
        added = step.opened - previous
        per_open = step.seconds / added if added else 0.0
        per_kib = (step.rss_kib - before) / step.opened if step.opened else 0.0
        print(
            f"{step.opened:5} {step.seconds:8.2f} {per_open:11.3f} {step.rss_kib / 1024:8.1f} {per_kib:13.0f} "
            f"{step.agent_rss_kib / 1024:10.1f}" + ("  " + step.failure if step.failure else "")
        )
        previous = step.opened


def direct_client() -> None:
    """The baseline's client: a fresh process holding only asyncssh sessions, so its RSS growth is theirs."""
    import asyncssh

    job = json.loads(sys.stdin.read())
    key = asyncssh.import_private_key(job["key"])

    def direct() -> Shell:
        return DirectShell(port=job["port"], username=job["username"], key=key, certificates=job["certificates"])

    before, steps, held, opened = asyncio.run(
        escalate(direct, job["steps"], job["parallel"], os.getpid(), job["agent_pid"])
    )
    print(json.dumps([before, [asdict(step) for step in steps], held, opened]))


def run_direct_client(job: dict[str, Any]) -> tuple[int, list[Step], int, int]:
    process = subprocess.run(
        [sys.executable, __file__, "--direct-client"], input=json.dumps(job), capture_output=True, text=True
    )
    sys.stderr.write(process.stderr)
    if process.returncode:
        raise SystemExit(f"the direct ssh client failed (exit {process.returncode})")
    before, steps, held, opened = json.loads(process.stdout)
    return before, [Step(**step) for step in steps], held, opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="10,25,50,100,200", help="totals of open terminals after each batch")
    parser.add_argument("--max", type=int, default=200, help="never open more than this many")
    parser.add_argument("--parallel", type=int, default=8, help="terminals being opened at once")
    parser.add_argument(
        "--heap",
        type=int,
        default=0,
        metavar="LINES",
        help="also trace the web process's Python heap (tracemalloc) and print what each terminal "
        "added between the first and the last step, by owner and its LINES largest lines "
        "(tracing slows the web process: its batch times then mean nothing)",
    )
    parser.add_argument("--direct-client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_client:
        direct_client()
        return
    steps = sorted({min(int(step), args.max) for step in args.steps.split(",") if step.strip()})
    require_environment(web=True)
    raise_open_files(max(steps))

    # daphne closes a WebSocket whose application has not accepted it within 5 s by default; with
    # hundreds of terminals open on a small shared machine the handshake can take longer, and
    # escalation would stop on that rather than on what a terminal costs (batch times still show it).
    heap_dir = Path(tempfile.mkdtemp(prefix="bench-heap-")) if args.heap else None
    with Stack(web=True, daphne_options=("--websocket_connect_timeout", "60"), heap_dir=heap_dir) as stack:
        assert stack.target is not None and stack.devcloud is not None and stack.daphne is not None
        target = stack.target
        key, certificates = stack.credentials()
        portal = stack_portal(stack)

        def browser() -> Shell:
            return BrowserShell(portal)

        agent = stack.devcloud.pid
        print("direct ssh sessions (a client process of their own):", file=sys.stderr)
        direct_run = run_direct_client(
            {
                "port": target.sshd_port,
                "username": target.username,
                "key": key.export_private_key().decode(),
                "certificates": certificates,
                "steps": steps,
                "parallel": args.parallel,
                "agent_pid": agent,
            }
        )
        print("browser terminals (the daphne process):", file=sys.stderr)
        probe = HeapProbe(stack.daphne.pid, heap_dir) if heap_dir is not None else None
        try:
            browser_run = asyncio.run(escalate(browser, steps, args.parallel, stack.daphne.pid, agent, probe))
        except Exception:
            print(f"--- daphne log (tail) ---\n{stack.daphne_log()}", file=sys.stderr)
            raise
        daphne_errors = stack.daphne_errors()

    report("direct ssh (RSS of the client process)", *direct_run)
    report("browser terminals (RSS of the daphne web process)", *browser_run)
    print("\nbrowser / direct at each step")
    print(f"{'open':>5} {'batch time':>11} {'memory per terminal':>20}")
    for mine, theirs in zip(browser_run[1], direct_run[1], strict=False):
        if mine.opened != theirs.opened or not mine.opened:
            continue
        mine_kib = (mine.rss_kib - browser_run[0]) / mine.opened
        theirs_kib = (theirs.rss_kib - direct_run[0]) / theirs.opened
        print(f"{mine.opened:5} {ratio(mine.seconds, theirs.seconds):>11} {ratio(mine_kib, theirs_kib):>20}")
    if daphne_errors:
        print("\nthe web process logged:")
        for line, count in daphne_errors.items():
            print(f"  {count} x {line}")
    if probe is not None and heap_dir is not None:
        heap_report(probe, lines=args.heap)
        shutil.rmtree(heap_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
