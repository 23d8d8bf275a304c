"""Keystroke echo latency: one key at a time, wait for its echo, on three paths in the same run:

- direct:   asyncssh straight to the host's sshd on loopback (the baseline);
- channel:  asyncssh over the Session Manager data channel to devcloud's agent, no Django;
- browser:  the terminal WebSocket of a daphne process serving the portal, signed in as a
            browser is (session cookie, Origin, one-time ticket from the terminal page).

    .venv/bin/python benchmarks/terminal_latency.py [--samples 200] [--warmup 10]

Each shell runs ``cat``, so the echo comes from the host's tty line discipline, one byte per
key, and no readline redraw or line wrap adds output. Samples alternate between the paths
(key 1 on each, then key 2...), so a noisy moment on this shared machine hits all of them.
Prints the median and 95th percentile in milliseconds and their ratios to direct.

Needs root, OpenSSH, PostgreSQL and Redis on 127.0.0.1 (scripts/services starts them); uses
the database passport_bench_term and Redis db 12 (see benchmarks/_terminal_stack.py).
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import string
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _terminal_shells import Screen, Shell, path_shells, run_measuring
from _terminal_stack import Stack, ratio, require_environment

KEYS = string.ascii_lowercase


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(shells: dict[str, Callable[[], Shell]], samples: int, warmup: int) -> dict[str, list[float]]:
    screens = {label: await Screen(make()).open() for label, make in shells.items()}
    latencies: dict[str, list[float]] = {label: [] for label in screens}
    try:
        for screen in screens.values():
            await screen.ready()
            await screen.exchange(b"cat\r", b"cat\r\n")
            await asyncio.sleep(0.2)  # let cat start reading before the first key
        for n in range(warmup + samples):
            key = KEYS[n % len(KEYS)].encode()
            for label, screen in screens.items():
                seconds, _ = await screen.exchange(key, key, timeout=30)
                if n >= warmup:
                    latencies[label].append(seconds)
            if (n + 1) % 100 == 0:
                # A fresh line every 100 keys: the tty's line buffer stays small.
                for screen in screens.values():
                    await screen.shell.send(b"\x15")  # Ctrl-U erases it
                await asyncio.sleep(0.2)  # its erase output comes and goes untimed
    finally:
        for screen in screens.values():
            await screen.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200, help="timed keystrokes per path")
    parser.add_argument("--warmup", type=int, default=10, help="keystrokes per path before timing starts")
    parser.add_argument("--skip-browser", action="store_true", help="no daphne: direct and data channel only")
    args = parser.parse_args()
    require_environment(web=not args.skip_browser)

    with Stack(web=not args.skip_browser) as stack:
        shells = path_shells(stack, browser=not args.skip_browser)
        latencies = run_measuring(stack, measure(shells, args.samples, args.warmup))

    print(f"\nkeystroke echo latency, {args.samples} keys per path (after {args.warmup} untimed), milliseconds")
    print(f"{'path':10} {'median':>8} {'p95':>8} {'max':>8} {'median vs direct':>17} {'p95 vs direct':>14}")
    base = latencies["direct"]
    for label, values in latencies.items():
        median, p95 = statistics.median(values), percentile(values, 0.95)
        print(
            f"{label:10} {median * 1000:8.2f} {p95 * 1000:8.2f} {max(values) * 1000:8.2f} "
            f"{ratio(median, statistics.median(base)):>17} {ratio(p95, percentile(base, 0.95)):>14}"
        )


if __name__ == "__main__":
    main()
