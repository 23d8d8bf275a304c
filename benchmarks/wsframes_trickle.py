#!/usr/bin/env python
"""A binary frame that arrives a little per read (a slow or hostile peer), gathered by the data
channel's FrameTap (ssmchannel.wsframes): the CPU time for a frame in small reads against the same
frame in one read, measured in the same run.

    .venv/bin/python benchmarks/wsframes_trickle.py                # 1 MiB frame, 256-byte reads
    .venv/bin/python benchmarks/wsframes_trickle.py --piece 64 --repeat 5

FrameTap extends one buffer with each read; copying the whole frame so far on every read made
1 MiB in 256-byte reads 2 GiB of copying, a cost growing with the square of the frame (the ratio
was in the thousands; the test suite once held it under 20x). Only the CPU time of this process
(``time.process_time``) is measured; nothing here asserts a time. No database, no devcloud.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024 * 1024 - 16, help="Payload bytes of the frame (1 MiB).")
    parser.add_argument("--piece", type=int, default=256, help="Bytes per read when trickled (256).")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds; medians are shown (3).")
    return parser.parse_args()


async def measure(size: int, piece: int, repeat: int) -> tuple[list[float], list[float]]:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    from ssmchannel.wsframes import FrameTap

    async def idle(websocket: ServerConnection) -> None:
        await websocket.wait_closed()

    server = await serve(idle, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=None)
    port = server.sockets[0].getsockname()[1]
    whole_times: list[float] = []
    trickled_times: list[float] = []
    try:
        async with connect(f"ws://127.0.0.1:{port}", compression=None, ping_interval=None, max_size=None) as ws:
            tap = FrameTap(ws)
            if not tap.install():
                raise SystemExit("FrameTap could not take over the connection")
            frame = bytes((0x82, 127)) + size.to_bytes(8, "big") + b"z" * size

            def cost(step: int) -> float:
                started = time.process_time()
                for at in range(0, len(frame), step):
                    tap._data_received(frame[at : at + step])
                elapsed = time.process_time() - started
                if [len(f) for f in tap.take()] != [size]:
                    raise SystemExit("the frame did not come out whole")
                return elapsed

            for _ in range(repeat):  # taking turns, so the machine's load falls on both alike
                whole_times.append(cost(len(frame)))
                trickled_times.append(cost(piece))
    finally:
        server.close()
        await server.wait_closed()
    return whole_times, trickled_times


def main() -> None:
    args = parse_args()
    whole, trickled = asyncio.run(measure(args.size, args.piece, args.repeat))
    whole_ms, trickled_ms = statistics.median(whole) * 1000, statistics.median(trickled) * 1000
    reads = -(-(args.size + 10) // args.piece)
    print(f"frame of {args.size:,} bytes; median of {args.repeat} rounds, CPU time of this process")
    print(f"  in one read:            {whole_ms:9.2f} ms")
    print(f"  in {reads:,} reads of {args.piece} B: {trickled_ms:9.2f} ms ({trickled_ms * 1000 / reads:.2f} us a read)")
    # process_time ticks coarsely on some systems: a floor keeps the ratio finite and honest.
    print(f"trickled / one read: {trickled_ms / max(whole_ms, 1.0):.1f}x (one read floored at 1 ms)")


if __name__ == "__main__":
    main()
