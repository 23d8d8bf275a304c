"""Where an open browser terminal's memory goes: ``terminal_concurrency.py --heap``.

The web process runs through ``_heap_daphne.py``; ``HeapProbe`` tells it when to start tracing
(after the warm-up terminal) and when to write a snapshot (after each batch), and ``report``
compares the first batch's snapshot with the last one's, divided by the terminals opened in
between: Python's heap per terminal, by owner (the package or, for Passport, the module that
allocated it) and by line. What the resident set holds beyond that (malloc's headers and free
space, OpenSSL's cipher contexts, which Python does not trace) is the difference between
this figure and the RSS one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_TIMEOUT = 120.0


class HeapProbe:
    def __init__(self, pid: int, directory: Path) -> None:
        self.pid = pid
        self.directory = directory
        self.snapshots: list[tuple[int, Path]] = []  # (terminals open, its snapshot)

    def start(self) -> None:
        os.kill(self.pid, signal.SIGUSR1)

    async def snapshot(self, opened: int) -> None:
        number = len(self.snapshots)
        done = self.directory / f"{number}.done"
        os.kill(self.pid, signal.SIGUSR2)
        deadline = asyncio.get_running_loop().time() + SNAPSHOT_TIMEOUT
        while not done.exists():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the web process wrote no heap snapshot {number} in {SNAPSHOT_TIMEOUT:.0f} s")
            await asyncio.sleep(0.2)
        self.snapshots.append((opened, self.directory / f"{number}.snapshot"))


def owner(filename: str) -> str:
    """Who allocated: Passport's module, a third-party package, or the standard library's module."""
    path = Path(filename)
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1].removesuffix(".py")
    if path.is_relative_to(ROOT):
        return "passport " + str(path.relative_to(ROOT))
    parts = [part for part in path.parts if part.startswith("python3")]
    if parts:
        rest = path.parts[path.parts.index(parts[-1]) + 1 :]
        return "stdlib " + (rest[0].removesuffix(".py") if rest else path.name)
    return filename


def where(filename: str, lineno: int) -> str:
    """A line, by its path inside its package, Passport's repository or the standard library."""
    path = Path(filename)
    for marker in ("site-packages", *(part for part in path.parts if part.startswith("python3"))):
        if marker in path.parts:
            return "/".join(path.parts[path.parts.index(marker) + 1 :]) + f":{lineno}"
    if path.is_relative_to(ROOT):
        return f"{path.relative_to(ROOT)}:{lineno}"
    return f"{filename}:{lineno}"


def report(probe: HeapProbe, *, lines: int) -> None:
    if len(probe.snapshots) < 2:
        print("\nheap: fewer than two batches measured, nothing to compare", file=sys.stderr)
        return
    (first_open, first), (last_open, last) = probe.snapshots[0], probe.snapshots[-1]
    added = last_open - first_open
    if added <= 0:
        return
    stats = tracemalloc.Snapshot.load(str(last)).compare_to(tracemalloc.Snapshot.load(str(first)), "lineno")
    total = sum(stat.size_diff for stat in stats)
    by_owner: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for stat in stats:
        key = owner(stat.traceback[0].filename)
        by_owner[key] += stat.size_diff
        blocks[key] += stat.count_diff
    per_terminal = total / 1024 / added
    print(f"\nPython's heap in the web process per terminal ({first_open} to {last_open} open): {per_terminal:.1f} KiB")
    print(f"{'KiB':>7} {'blocks':>7}  owner")
    for key, size in by_owner.most_common():
        if abs(size) / added < 0.1 * 1024:
            continue
        print(f"{size / 1024 / added:7.2f} {blocks[key] / added:7.1f}  {key}")
    print(f"\nthe {lines} lines that kept most per terminal")
    for stat in stats[:lines]:
        frame = stat.traceback[0]
        line = where(frame.filename, frame.lineno)
        print(f"{stat.size_diff / 1024 / added:7.2f} {stat.count_diff / added:7.1f}  {line}")
