"""Transcript build time with typed lines held back and left out (terminal.transcript): the same events
at a ``Password: `` prompt vs at a ``$ `` prompt, and held lines settled left out vs kept.

Prints ratios measured in the same run (no absolute times are asserted anywhere). Settling a line touches
only its own index entries, so both ratios stay near 1 however many lines are held (review s32a: 2,000
lines of 20 keys took 70 s at ``Password: `` against 0.3 s at ``$ `` when each re-walked those behind it).
Run: .venv/bin/python benchmarks/transcript_hidden_lines.py [--lines N] [--keys N] [--runs N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terminal.transcript import transcript_from_events
from terminal.transcript.text import Cleaner


def events(prompt: str, lines: int, keys: int) -> list[list[object]]:
    """``lines`` lines typed a key an event after ``prompt``, nothing printed until the end."""
    made: list[list[object]] = [[0.1, "o", prompt]]
    moment = 0.2
    for _ in range(lines):
        for _ in range(keys):
            made.append([moment, "i", "a"])
            moment += 0.0001
        made.append([moment, "i", "\r"])
        moment += 0.0001
    made.append([moment, "o", "\r\n$ "])
    return made


def held(lines: int, keys: int, *, shown: bool) -> None:
    """``lines`` lines held back (a key an event), then settled one at a time, kept or left out."""
    cleaner = Cleaner(typed=True, defer=True)
    for number in range(lines):
        for key in range(keys):
            cleaner.add("a", number + key / 1000)
        cleaner.add("\r", number + 0.999)
    for number in range(lines):
        cleaner.settle("a" * keys, number, shown=shown)
    cleaner.text()


def fastest(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000, help="typed lines held (default 2000)")
    parser.add_argument("--keys", type=int, default=20, help="keys a line, an event each (default 20)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, the fastest counts (default 3)")
    args = parser.parse_args()
    if args.lines < 1 or args.keys < 1 or args.runs < 1:
        parser.error("--lines, --keys and --runs must be at least 1")
    shell, password = events("$ ", args.lines, args.keys), events("Password: ", args.lines, args.keys)
    at_shell = fastest(args.runs, lambda: transcript_from_events(shell))
    at_password = fastest(args.runs, lambda: transcript_from_events(password))
    kept = fastest(args.runs, lambda: held(args.lines, args.keys, shown=True))
    left_out = fastest(args.runs, lambda: held(args.lines, args.keys, shown=False))
    print(f"{args.lines} lines of {args.keys} keys, an input event a key ({len(shell)} events)")
    print(f"transcript at 'Password: ' / at '$ ': {at_password / at_shell:.2f}x ({at_shell:.3f} s at '$ ')")
    print(f"held lines left out / kept: {left_out / kept:.2f}x ({kept:.3f} s kept)")


if __name__ == "__main__":
    main()
