"""Recording cost of the browser terminal: AsciicastWriter against writing the raw bytes to a file.

Prints a ratio measured in the same run (no absolute times are asserted anywhere).
Run: .venv/bin/python benchmarks/terminal_recording.py [--chunks N] [--chunk-bytes N] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LINE = "line {:05d}: héllo wörld ☃ "


def make_chunks(count: int, chunk_bytes: int) -> list[bytes]:
    """``count`` chunks of terminal output, each about ``chunk_bytes`` long (whole lines, non-ASCII included)."""
    lines = max(1, round(chunk_bytes / len(LINE.format(0).encode())))
    return [LINE.format(i % 100_000).encode() * lines for i in range(count)]


def raw(path: Path, chunks: list[bytes]) -> float:
    started = time.perf_counter()
    with path.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            handle.flush()
    return time.perf_counter() - started


def recorded(path: Path, chunks: list[bytes]) -> float:
    from terminal.recording import AsciicastWriter

    started = time.perf_counter()
    writer = AsciicastWriter(path, cols=80, rows=24, title="bench")
    for chunk in chunks:
        writer.output(chunk)
    writer.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000, help="chunks of output written per run (default 20000)")
    parser.add_argument("--chunk-bytes", type=int, default=240, help="about this many bytes a chunk (default 240)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, the fastest counts (default 3)")
    args = parser.parse_args()
    if args.chunks < 1 or args.chunk_bytes < 1 or args.runs < 1:
        parser.error("--chunks, --chunk-bytes and --runs must be at least 1")
    chunks = make_chunks(args.chunks, args.chunk_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        base = min(raw(Path(tmp) / f"raw-{n}", chunks) for n in range(args.runs))
        cast = min(recorded(Path(tmp) / f"cast-{n}.cast", chunks) for n in range(args.runs))
    megabytes = sum(map(len, chunks)) / 1e6
    print(f"{megabytes:.1f} MB in {len(chunks)} chunks (pid {os.getpid()})")
    print(f"asciicast recording / raw write: {cast / base:.2f}x")


if __name__ == "__main__":
    main()
