"""Capturing what the real OpenSSH tools say to each other, for the observer tests.

As a script it stands where the proxy would, between a client and a server program over pipes, and
logs both directions in the order the bytes pass (a reply is always logged after its request, as the
proxy hands them to an observer):

    capture.py tee LOG -- PROGRAM ARGS...   relay stdin/stdout to PROGRAM, logging both ways
    capture.py ssh SSH-ARGS...              a fake ssh for `scp -S`: "-s -- HOST sftp" runs sftp-server,
                                            "-- HOST COMMAND" runs `sh -c COMMAND`, here, through `tee`
                                            (logs go to $CAPTURE_DIR, one per connection)

Log records: one byte (b"c" client to server, b"s" server to client), a uint32 length, the bytes.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
Record = tuple[str, bytes]


def tee(log_path: str, command: list[str]) -> NoReturn:
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert child.stdin is not None and child.stdout is not None
    lock = threading.Lock()
    with open(log_path, "wb") as log:

        def pump(source: int, target: int, tag: bytes) -> None:
            try:
                while data := os.read(source, 65536):
                    with lock:
                        log.write(tag + struct.pack(">I", len(data)) + data)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(target, view) :]
            except BrokenPipeError:
                pass
            os.close(target)  # the end of input reaches the other side

        to_server = threading.Thread(target=pump, args=(0, child.stdin.fileno(), b"c"), daemon=True)
        to_server.start()
        pump(child.stdout.fileno(), 1, b"s")
        status = child.wait()
        lock.acquire()  # held to the end: the other pump may not write to a closed log
        log.flush()
        os._exit(status)


def fake_ssh(arguments: list[str]) -> NoReturn:
    split = arguments.index("--")
    options, (_host, *command) = arguments[:split], arguments[split + 1 :]
    log = Path(os.environ["CAPTURE_DIR"]) / f"{time.monotonic_ns()}-{os.getpid()}"
    if "-s" in options:
        assert command == ["sftp"], command
        program = [SFTP_SERVER]
    else:
        program = ["sh", "-c", " ".join(command)]
    log.with_suffix(".command").write_text(" ".join(command))
    tee(str(log.with_suffix(".log")), program)


# --- reading captures back ----------------------------------------------------------------------------
def read_log(path: Path) -> list[Record]:
    data = path.read_bytes()
    records: list[Record] = []
    position = 0
    while position < len(data):
        tag, length = data[position : position + 1], struct.unpack(">I", data[position + 1 : position + 5])[0]
        records.append(("client" if tag == b"c" else "server", data[position + 5 : position + 5 + length]))
        position += 5 + length
    return records


def logs(directory: Path) -> list[tuple[str, list[Record]]]:
    """Every connection captured in ``directory``, in order: (remote command, records)."""
    found = sorted(directory.glob("*.log"), key=lambda path: int(path.stem.split("-")[0]))
    return [(path.with_suffix(".command").read_text(), read_log(path)) for path in found]


def sftp_packets(records: list[Record]) -> list[Record]:
    """Whole sftp packets, each placed where its last byte passed (when an observer can act on it)."""
    pending = {"client": bytearray(), "server": bytearray()}
    packets: list[Record] = []
    for direction, data in records:
        buffer = pending[direction]
        buffer += data
        while len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:4], "big"):
            end = 4 + int.from_bytes(buffer[:4], "big")
            packets.append((direction, bytes(buffer[:end])))
            del buffer[:end]
    assert not any(pending.values()), "a capture ended inside a packet"
    return packets


def shuffle_replies(records: list[Record], rng: random.Random) -> list[Record]:
    """The server's packets shuffled within each burst between two client packets: every reply in a
    burst answers a request sent before it, so any order is one a server could have chosen."""
    shuffled: list[Record] = []
    burst: list[Record] = []
    for packet in [*sftp_packets(records), ("client", b"")]:
        if packet[0] == "server":
            burst.append(packet)
            continue
        rng.shuffle(burst)
        shuffled += burst
        burst = []
        if packet[1]:
            shuffled.append(packet)
    return shuffled


def refragment(records: list[Record], rng: random.Random) -> Iterator[Record]:
    """The same bytes in the same causal order, cut at random places: runs of one direction are
    joined, then cut into pieces from 1 byte to 64 KiB (small ones often, to split every header)."""
    runs: list[Record] = []
    for direction, data in records:
        if runs and runs[-1][0] == direction:
            runs[-1] = (direction, runs[-1][1] + data)
        else:
            runs.append((direction, data))
    for direction, data in runs:
        position = 0
        while position < len(data):
            size = rng.choice((1, 2, 3, 5, 7, 13, 100, 4096, 65536, rng.randint(1, 70000)))
            yield direction, data[position : position + size]
            position += size


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "tee":
        tee(rest[0], rest[rest.index("--") + 1 :])
    fake_ssh(rest)
