"""daphne as ``python -m daphne`` runs it, with Python's heap traced on request (``--heap``).

terminal_concurrency.py starts the web process with this script instead of ``-m daphne`` when
asked for a heap breakdown. Tracing from the start slows Django's start-up past the benchmark's
patience, so nothing is traced until SIGUSR1 (sent after the warm-up terminal, when lazy imports
and first-use caches are done); each SIGUSR2 then writes a tracemalloc snapshot, after a full
collection, to ``<PASSPORT_BENCH_HEAP_DIR>/<n>.snapshot`` (n = 0, 1, ...) and creates
``<n>.done`` when the file is whole. Signal handlers run on daphne's main thread, between
the reactor's callbacks.
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = 1  # the allocating line: grouping by file needs no more, and deeper traces cost CPU per allocation


def _install(directory: Path) -> None:
    numbers = itertools.count()

    def start(signum: int, frame: FrameType | None) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)

    def dump(signum: int, frame: FrameType | None) -> None:
        number = next(numbers)
        gc.collect()
        tracemalloc.take_snapshot().dump(str(directory / f"{number}.snapshot"))
        (directory / f"{number}.done").touch()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)


if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository, as ``-m`` from it would
    _install(Path(os.environ["PASSPORT_BENCH_HEAP_DIR"]))
    from daphne.cli import CommandLineInterface

    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()
