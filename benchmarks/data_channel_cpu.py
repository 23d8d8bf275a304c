"""CPU per message of the data channel alone, both ends, no SSH: what a loaded machine cannot blur.

devcloud's ``StreamServer`` (the agent's end) runs in a child process, its targets in another:
``down`` sends SIZE random bytes as soon as the channel connects, ``up`` reads SIZE bytes and
answers one byte. This process is the client (``ssmchannel.DataChannel``, no asyncssh): it reads
the SIZE bytes down, then writes SIZE bytes up and waits for the answer.

    .venv/bin/python benchmarks/data_channel_cpu.py [--size 20] [--repeat 3]

For each round it prints MB/s (wall clock: load on the machine shows there) and CPU seconds:
the client's process time per direction, and the agent's event-loop thread time per round
(both directions). Down is 1,024 bytes per message (what the agent sends), so its CPU per
message is the cost that bounds download; up carries up to 64 KiB per message. Needs no
database, Redis or root. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MESSAGE = 1024  # bytes per output_stream_data message, as the agent sends them
TOKEN = "benchmark-token"  # noqa: S105 - a throwaway session on loopback


def serve_targets(size: int) -> tuple[int, int]:
    """Two loopback listeners (threads): ``down`` sends ``size`` bytes, ``up`` reads them and answers."""

    def handle(conn: socket.socket, mode: str) -> None:
        with conn:
            if mode == "down":
                block = os.urandom(1 << 20)
                sent = 0
                while sent < size:
                    piece = block[: min(len(block), size - sent)]
                    conn.sendall(piece)
                    sent += len(piece)
                conn.recv(1)  # until the client's goodbye
                return
            received = 0
            while received < size:
                data = conn.recv(1 << 20)
                if not data:
                    return
                received += len(data)
            conn.sendall(b"!")
            conn.recv(1)

    def accept(listener: socket.socket, mode: str) -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn, mode), daemon=True).start()

    ports = []
    for mode in ("down", "up"):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        ports.append(listener.getsockname()[1])
        threading.Thread(target=accept, args=(listener, mode), daemon=True).start()
    return ports[0], ports[1]


def agent_main(size: int) -> None:
    """The child: devcloud's StreamServer; each line on stdin asks for its loop thread's CPU time."""
    from devcloud.streams import StreamServer, StreamTarget

    targets = subprocess.Popen(
        [sys.executable, __file__, "--targets", "--size", str(size >> 20)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert targets.stdout is not None and targets.stdin is not None
    down, up = map(int, targets.stdout.readline().split())
    token = TOKEN
    sessions = {"down": StreamTarget(token=token, port=down), "up": StreamTarget(token=token, port=up)}
    server = StreamServer(resolve_session=sessions.get)
    print(server.start(), flush=True)
    thread = server._thread
    assert thread is not None and thread.ident is not None
    clock = time.pthread_getcpuclockid(thread.ident)
    for line in sys.stdin:
        if line.strip() == "stop":
            break
        print(f"{time.clock_gettime(clock):.6f}", flush=True)
    server.stop()
    targets.stdin.close()
    targets.wait(10)


async def client_round(base: str, size: int) -> dict[str, float]:
    from ssmchannel import DataChannel

    result: dict[str, float] = {}
    async with DataChannel.open(f"{base}/v1/data-channel/down", TOKEN) as channel:
        received = 0
        cpu, started = time.process_time(), time.perf_counter()
        while received < size:
            data = await channel.read(65536)
            if not data:
                raise RuntimeError(f"the download ended after {received} of {size} bytes")
            received += len(data)
        result["down s"], result["down cpu"] = time.perf_counter() - started, time.process_time() - cpu
        await channel.write(b"x")
    async with DataChannel.open(f"{base}/v1/data-channel/up", TOKEN) as channel:
        block = os.urandom(65536)
        cpu, started = time.process_time(), time.perf_counter()
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            await channel.write(piece)
            sent += len(piece)
        if await channel.read(1) != b"!":
            raise RuntimeError("the upload got no answer")
        result["up s"], result["up cpu"] = time.perf_counter() - started, time.process_time() - cpu
        await channel.write(b"x")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20, help="MiB each way")
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    parser.add_argument("--agent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--targets", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.targets:
        print(*serve_targets(args.size << 20), flush=True)
        sys.stdin.readline()
        return
    size = args.size << 20
    if args.agent:
        agent_main(size)
        return
    agent = subprocess.Popen(
        [sys.executable, __file__, "--agent", "--size", str(args.size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert agent.stdin is not None and agent.stdout is not None

    def agent_cpu() -> float:
        assert agent.stdin is not None and agent.stdout is not None
        agent.stdin.write("cpu\n")
        agent.stdin.flush()
        return float(agent.stdout.readline())

    base = agent.stdout.readline().strip()
    rounds = []
    try:
        for number in range(args.repeat):
            before = agent_cpu()
            result = asyncio.run(client_round(base, size))
            result["agent cpu"] = agent_cpu() - before
            rounds.append(result)
            print(
                f"  round {number + 1}: down {size / result['down s'] / 1e6:6.1f} MB/s, up "
                f"{size / result['up s'] / 1e6:6.1f} MB/s; CPU s: client down {result['down cpu']:.2f}, "
                f"client up {result['up cpu']:.2f}, agent (both) {result['agent cpu']:.2f}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        agent.stdin.write("stop\n")
        agent.stdin.flush()
        agent.wait(30)
    messages = size // MESSAGE
    down_cpu = statistics.median(r["down cpu"] for r in rounds)
    agent_cpu_median = statistics.median(r["agent cpu"] for r in rounds)
    print(
        f"\ndata channel alone, {args.size} MiB each way, median of {args.repeat} rounds "
        f"(load {os.getloadavg()[0]:.1f})"
    )
    print(f"down {statistics.median(size / r['down s'] for r in rounds) / 1e6:6.1f} MB/s, up "
          f"{statistics.median(size / r['up s'] for r in rounds) / 1e6:6.1f} MB/s")  # fmt: skip
    print(f"client CPU, down: {down_cpu:.2f} s = {down_cpu / messages * 1e6:.1f} us per 1,024-byte message")
    print(f"client CPU, up:   {statistics.median(r['up cpu'] for r in rounds):.2f} s")
    print(
        f"agent CPU, both directions: {agent_cpu_median:.2f} s "
        f"(<= {agent_cpu_median / messages * 1e6:.1f} us per message down)"
    )


if __name__ == "__main__":
    main()
