"""SFTP packets built by hand, and a channel driven packet by packet: what a client written to slip past
the observer would send (requests pipelined ahead of their answers, predictable handles, reused ids)."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Sequence

INIT, OPEN, CLOSE, READ, WRITE, REALPATH, REMOVE, EXTENDED = 1, 3, 4, 5, 6, 16, 13, 200
FX_READ, FX_WRITE, FX_APPEND, FX_CREAT, FX_TRUNC = 0x01, 0x02, 0x04, 0x08, 0x10
WRITE_NEW = FX_WRITE | FX_CREAT | FX_TRUNC  # what `put` opens with


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def string(value: bytes) -> bytes:
    return u32(len(value)) + value


def packet(kind: int, *fields: bytes) -> bytes:
    body = bytes([kind]) + b"".join(fields)
    return u32(len(body)) + body


def init() -> bytes:
    return packet(INIT, u32(3))


def open_(request: int, path: bytes, pflags: int) -> bytes:
    return packet(OPEN, u32(request), string(path), u32(pflags), u32(0))


def handle(request: int, name: bytes) -> bytes:
    return packet(102, u32(request), string(name))


def status(request: int, code: int = 0) -> bytes:
    return packet(101, u32(request), u32(code), string(b""), string(b""))


def write(request: int, name: bytes, offset: int, data: bytes) -> bytes:
    return packet(WRITE, u32(request), string(name), u64(offset), string(data))


def read(request: int, name: bytes, offset: int, length: int) -> bytes:
    return packet(READ, u32(request), string(name), u64(offset), u32(length))


def data(request: int, content: bytes) -> bytes:
    return packet(103, u32(request), string(content))


def close(request: int, name: bytes) -> bytes:
    return packet(CLOSE, u32(request), string(name))


def remove(request: int, path: bytes) -> bytes:
    return packet(REMOVE, u32(request), string(path))


def realpath(request: int, path: bytes) -> bytes:
    return packet(REALPATH, u32(request), string(path))


def copy_data(request: int, source: bytes, destination: bytes) -> bytes:
    """OpenSSH's copy-data: all of ``source`` (length 0: to its end) into ``destination`` at offset 0."""
    return packet(EXTENDED, u32(request), string(b"copy-data"), string(source), u64(0), u64(0),
                  string(destination), u64(0))  # fmt: skip


def server_handle(number: int) -> bytes:
    """A handle as OpenSSH's sftp-server makes them: the uint32 index of its table of open files and
    directories (0, 1, ... a freed one taken again first), which a client can name before the answer."""
    return u32(number)


class WireChannel:
    """A program speaking sftp on stdin/stdout (``ssh -s HOST sftp``), fed raw packets."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.child = subprocess.Popen(
            list(command), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._buffer = bytearray()

    def send(self, *packets: bytes) -> None:
        assert self.child.stdin is not None
        self.child.stdin.write(b"".join(packets))
        self.child.stdin.flush()

    def replies(self, count: int, timeout: float = 60) -> list[bytes]:
        """The next ``count`` whole packets from the server (each with its length)."""
        assert self.child.stdout is not None
        found: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            if len(self._buffer) >= 4 and len(self._buffer) >= 4 + int.from_bytes(self._buffer[:4], "big"):
                end = 4 + int.from_bytes(self._buffer[:4], "big")
                found.append(bytes(self._buffer[:end]))
                del self._buffer[:end]
                continue
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.child.stdout], [], [], max(left, 0))
            chunk = os.read(self.child.stdout.fileno(), 65536) if ready else b""
            if not chunk:
                raise AssertionError(f"{len(found)} of {count} replies: {found!r}, stderr {self.end()!r}")
            self._buffer += chunk
        return found

    def end(self) -> bytes:
        """Close the channel (EOF, then the program exits); its stderr."""
        assert self.child.stdin is not None and self.child.stderr is not None
        if not self.child.stdin.closed:
            self.child.stdin.close()
        try:
            self.child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        return self.child.stderr.read()
