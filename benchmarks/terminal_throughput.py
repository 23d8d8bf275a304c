"""Terminal output throughput: ``head -c SIZE /dev/urandom | base64`` in a PTY shell on the same
loopback sshd, read three ways in the same run:

- direct:   asyncssh straight to the host's sshd (the baseline);
- channel:  asyncssh over the Session Manager data channel to devcloud's agent, no Django;
- browser:  the terminal WebSocket of a daphne process serving the portal, signed in as a
            browser is (session cookie, Origin, one-time ticket from the terminal page); the
            web process runs the SSH bridge and records every byte (asciicast) on the way.

    .venv/bin/python benchmarks/terminal_throughput.py [--size 20M] [--repeat 3]

Then bulk transfer both ways (see _bulk_paths.py), again in the same run: SIZE random bytes
down (``head -c SIZE /dev/urandom``) and up (into ``head -c SIZE >/dev/null``) over an SSH
exec channel, three ways to the same sshd: direct, the data channel alone, and ``passport
proxy``'s code in a child process (ssh's ProxyCommand). It prints each path's MB/s and its
ratio to direct ssh for each direction (``--skip-bulk`` leaves it out).

Needs root, OpenSSH, PostgreSQL and Redis on 127.0.0.1 (scripts/services starts them); uses
the database passport_bench_term and Redis db 12 (see benchmarks/_terminal_stack.py). The
paths take turns within each round; the table shows the median of the rounds in MB/s
(10^6 bytes of terminal output, base64 lines with the PTY's CRLF) and the ratio to direct.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bulk_paths import Transfer, bulk_openers, measure_bulk, parse_size
from _terminal_shells import Screen, Shell, path_shells, run_measuring
from _terminal_stack import Stack, ratio, require_environment

MARKER = b"bench-done-42"  # the typed line reads bench-done-$((6*7)): only the output matches


async def measure(shells: dict[str, Callable[[], Shell]], size: str, repeat: int) -> dict[str, list[tuple[float, int]]]:
    results: dict[str, list[tuple[float, int]]] = {label: [] for label in shells}
    command = f"head -c {size} /dev/urandom | base64; echo bench-done-$((6*7))\r".encode()
    for round_number in range(repeat):
        for label, make in shells.items():
            screen = await Screen(make()).open()
            try:
                await screen.ready()
                seconds, received = await screen.exchange(command, MARKER, timeout=600)
            finally:
                await screen.close()
            results[label].append((seconds, received))
            print(
                f"  round {round_number + 1} {label:8} {received / 1e6:7.1f} MB in {seconds:6.2f} s",
                file=sys.stderr,
                flush=True,
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--size", default="20M", help="random bytes (base64 in the terminal, raw in bulk), as head -c takes them"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each path runs once per round")
    parser.add_argument("--skip-browser", action="store_true", help="no daphne: direct and data channel only")
    parser.add_argument("--skip-terminal", action="store_true", help="no terminal output table")
    parser.add_argument("--skip-bulk", action="store_true", help="no bulk transfer table (down and up)")
    args = parser.parse_args()
    require_environment(web=not args.skip_browser)

    with Stack(web=not args.skip_browser) as stack:
        results: dict[str, list[tuple[float, int]]] = {}
        if not args.skip_terminal:
            shells = path_shells(stack, browser=not args.skip_browser)
            results = run_measuring(stack, measure(shells, args.size, args.repeat))
        bulk = {} if args.skip_bulk else run_measuring(
            stack, measure_bulk(bulk_openers(stack), parse_size(args.size), args.repeat, stack.devcloud_pid)
        )  # fmt: skip

    if results:
        print_terminal(results, args.size, args.repeat)
    if bulk:
        print_bulk(bulk, args.size, args.repeat)


def print_terminal(results: dict[str, list[tuple[float, int]]], size: str, repeat: int) -> None:
    print(f"\nterminal output of head -c {size} /dev/urandom | base64, median of {repeat} rounds")
    print(f"{'path':10} {'MB':>8} {'seconds':>9} {'MB/s':>8} {'vs direct':>10}")
    rates = {}
    for label, runs in results.items():
        seconds = statistics.median(s for s, _ in runs)
        received = statistics.median(r for _, r in runs)
        rates[label] = statistics.median(r / s for s, r in runs) / 1e6
        versus = ratio(rates[label], rates["direct"])
        print(f"{label:10} {received / 1e6:8.1f} {seconds:9.2f} {rates[label]:8.1f} {versus:>10}")
    if "browser" in rates:
        print(f"browser / data channel alone: {ratio(rates['browser'], rates['channel']).strip()}")


def print_bulk(bulk: dict[tuple[str, str], list[Transfer]], size: str, repeat: int) -> None:
    amount = parse_size(size)
    print(f"\nbulk transfer of {size} random bytes over an SSH exec channel, median of {repeat} rounds (min-max MB/s)")
    print(
        f"{'path':10} {'direction':>9} {'seconds':>9} {'MB/s':>8} {'range':>13} {'vs direct':>10} "
        f"{'CPU client':>11} {'CPU far':>8} {'cores':>6}"
    )
    rates: dict[tuple[str, str], float] = {}
    cpu: dict[tuple[str, str], float] = {}
    for (label, direction), runs in sorted(bulk.items(), key=lambda item: (item[0][1], item[0][0] != "direct")):
        rates[label, direction] = statistics.median(amount / run.seconds for run in runs) / 1e6
        low, high = min(amount / run.seconds for run in runs) / 1e6, max(amount / run.seconds for run in runs) / 1e6
        versus = ratio(rates[label, direction], rates["direct", direction])
        span = f"{low:.1f}-{high:.1f}"
        client = statistics.median(run.client_cpu for run in runs)
        far = statistics.median(run.far_cpu for run in runs)
        cpu[label, direction] = client + far
        cores = statistics.median((run.client_cpu + run.far_cpu) / run.seconds for run in runs)
        print(
            f"{label:10} {direction:>9} {statistics.median(run.seconds for run in runs):9.2f} "
            f"{rates[label, direction]:8.1f} {span:>13} {versus:>10} {client:11.2f} {far:8.2f} {cores:6.2f}"
        )
    for label in ("channel", "proxy"):
        if (label, "down") in rates and (label, "up") in rates:
            down = ratio(rates[label, "down"], rates["direct", "down"]).strip()
            up = ratio(rates[label, "up"], rates["direct", "up"]).strip()
            print(f"{label} vs direct ssh: down {down}, up {up}")
    if ("channel", "down") in cpu:
        # What the data channel's two ends cost, beyond what SSH costs on the direct path.
        messages = amount / 1024
        extra = {label: (cpu[label, "down"] - cpu["direct", "down"]) / messages * 1e6 for label in ("channel", "proxy")}
        # At 0.7x the transfer may take direct's time / 0.7, with every core busy at most.
        direct_seconds = statistics.median(run.seconds for run in bulk["direct", "down"])
        cores = os.cpu_count() or 1
        budget = (cores * direct_seconds / 0.7 - cpu["direct", "down"]) / messages * 1e6
        print(
            f"CPU of the data channel's two ends down, beyond direct ssh's: channel {extra['channel']:.1f} us, "
            f"proxy {extra['proxy']:.1f} us per 1,024-byte message; 0.7x on {cores} cores leaves at most "
            f"{budget:.1f} us (direct ssh keeps {cpu['direct', 'down'] / direct_seconds:.2f} cores busy)"
        )


if __name__ == "__main__":
    main()
