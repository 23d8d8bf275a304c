"""Recording cost of the browser terminal: AsciicastWriter against writing the raw bytes to a file.

Prints a ratio measured in the same run (no absolute times are asserted anywhere).
Run: .venv/bin/python benchmarks/terminal_recording.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHUNKS = [f"line {i:05d}: héllo wörld ☃ ".encode() * 8 for i in range(20_000)]


def raw(path: Path) -> float:
    started = time.perf_counter()
    with path.open("wb") as handle:
        for chunk in CHUNKS:
            handle.write(chunk)
            handle.flush()
    return time.perf_counter() - started


def recorded(path: Path) -> float:
    from terminal.recording import AsciicastWriter

    started = time.perf_counter()
    writer = AsciicastWriter(path, cols=80, rows=24, title="bench")
    for chunk in CHUNKS:
        writer.output(chunk)
    writer.close()
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = min(raw(Path(tmp) / f"raw-{n}") for n in range(3))
        cast = min(recorded(Path(tmp) / f"cast-{n}.cast") for n in range(3))
    megabytes = sum(map(len, CHUNKS)) / 1e6
    print(f"{megabytes:.1f} MB in {len(CHUNKS)} chunks (pid {os.getpid()})")
    print(f"asciicast recording / raw write: {cast / base:.2f}x")


if __name__ == "__main__":
    main()
