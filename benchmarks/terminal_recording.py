"""Recording cost of the browser terminal: AsciicastWriter against writing the raw bytes to a file; and
a paste of short lines recorded through the writer's gate (terminal.transcript.withhold, which a terminal
always has) against the same writer without one.

Prints ratios measured in the same run (no absolute times are asserted anywhere). Before the gate judged a
paste's lines at once (PASTE_JUDGED), a 6 MiB paste of 8-byte lines cost it about 5 s a MiB.
Run: .venv/bin/python benchmarks/terminal_recording.py [--chunks N] [--chunk-bytes N] [--paste-mib N] [--runs N]
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


def pasted(path: Path, pieces: list[bytes], *, gated: bool) -> float:
    """``pieces`` of a paste recorded as input after a shell prompt, through a gate or not."""
    from terminal.recording import AsciicastWriter
    from terminal.transcript.withhold import SecretInputGate

    started = time.perf_counter()
    writer = AsciicastWriter(path, cols=80, rows=24, title="bench", gate=SecretInputGate() if gated else None)
    writer.output(b"user@host:~$ ")
    writer.input(b"stty raw -echo; sleep 4; sha256sum\r")
    for piece in pieces:
        writer.input(piece)
    writer.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000, help="chunks of output written per run (default 20000)")
    parser.add_argument("--chunk-bytes", type=int, default=240, help="about this many bytes a chunk (default 240)")
    parser.add_argument("--paste-mib", type=int, default=6, help="MiB of 8-byte lines pasted (default 6)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, the fastest counts (default 3)")
    args = parser.parse_args()
    if args.chunks < 1 or args.chunk_bytes < 1 or args.paste_mib < 1 or args.runs < 1:
        parser.error("--chunks, --chunk-bytes, --paste-mib and --runs must be at least 1")
    chunks = make_chunks(args.chunks, args.chunk_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        base = min(raw(Path(tmp) / f"raw-{n}", chunks) for n in range(args.runs))
        cast = min(recorded(Path(tmp) / f"cast-{n}.cast", chunks) for n in range(args.runs))
        # As the page sends a paste: 4,096-byte pieces (static/terminal/terminal.js).
        paste = b"".join(b"%07d\n" % number for number in range(args.paste_mib * 1024 * 1024 // 8))
        pieces = [paste[start : start + 4096] for start in range(0, len(paste), 4096)]
        plain = min(pasted(Path(tmp) / f"plain-{n}.cast", pieces, gated=False) for n in range(args.runs))
        gated = min(pasted(Path(tmp) / f"gated-{n}.cast", pieces, gated=True) for n in range(args.runs))
    megabytes = sum(map(len, chunks)) / 1e6
    print(f"{megabytes:.1f} MB in {len(chunks)} chunks (pid {os.getpid()})")
    print(f"asciicast recording / raw write: {cast / base:.2f}x")
    print(f"{args.paste_mib} MiB pasted in 8-byte lines, 4,096 bytes a piece ({plain:.2f} s ungated)")
    print(f"input through the gate / without: {gated / plain:.2f}x")


if __name__ == "__main__":
    main()
