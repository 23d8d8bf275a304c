"""``passport proxy`` widens ssh's ProxyCommand pipes (benchmarks/terminal_throughput.py: bulk upload)."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from passport_cli.stdio import PIPE_SIZE, widen_pipe

pytestmark = pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="Linux pipes only")

_CHILD = (
    "import asyncio\n"
    "from passport_cli.stdio import stdio_streams\n"
    "async def main():\n"
    "    reader, writer = await stdio_streams()\n"
    "    writer.write(b'ready\\n')\n"
    "    await writer.drain()\n"
    "    await reader.read()\n"
    "asyncio.run(main())\n"
)


def test_the_proxys_stdin_pipe_is_widened_and_its_stdout_left_alone() -> None:
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root)
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == b"ready\n"
        # The same pipes, seen from ssh's end: the upload's widened, the download's as Linux made it.
        assert fcntl.fcntl(child.stdin.fileno(), fcntl.F_GETPIPE_SZ) == PIPE_SIZE
        assert fcntl.fcntl(child.stdout.fileno(), fcntl.F_GETPIPE_SZ) == 65536
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0
        child.stdout.close()


def test_a_pipe_is_widened_and_anything_else_is_left_alone(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) < PIPE_SIZE
        assert widen_pipe(write_end) == PIPE_SIZE
        assert fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ) == PIPE_SIZE
        # A pipe already larger is never shrunk.
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4 * PIPE_SIZE)
        assert widen_pipe(write_end) == 4 * PIPE_SIZE
    finally:
        os.close(read_end)
        os.close(write_end)
    with open(tmp_path / "file", "wb") as plain:
        assert widen_pipe(plain.fileno()) is None
    left, right = socket.socketpair()
    with left, right:
        assert widen_pipe(left.fileno()) is None
    closed_read, closed_write = os.pipe()
    os.close(closed_read)
    os.close(closed_write)
    assert widen_pipe(closed_write) is None  # a closed descriptor: nothing to widen, no error


def test_a_size_beyond_what_the_system_allows_leaves_the_pipe_usable() -> None:
    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    read_end, write_end = os.pipe()
    try:
        before = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        # root may exceed pipe-max-size: ask it for more than any pipe can hold (1 GiB and a page).
        asked = (1 << 30) + 4096 if os.geteuid() == 0 else limit * 2
        got = widen_pipe(write_end, asked)
        assert got is not None and got >= before
        os.write(write_end, b"still a pipe")
        assert os.read(read_end, 64) == b"still a pipe"
    finally:
        os.close(read_end)
        os.close(write_end)


_MANY_PROXIES = r"""
import fcntl, os, sys
sys.path.insert(0, sys.argv[1])
from passport_cli.stdio import PIPE_SIZE, widen_pipe
os.setgid(65534)
os.setuid(65534)  # an ordinary user: the kernel charges their pipe buffers to them
held = []
for _ in range(100):  # a hundred `passport proxy` processes of one person (an ssh fan-out)
    stdin, stdout = os.pipe(), os.pipe()  # the ProxyCommand pipes of one of them
    held += [stdin, stdout]
    assert widen_pipe(stdin[0]) == PIPE_SIZE
read_end, _ = os.pipe()  # any other pipe of the same user, in any program
print(fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to an unprivileged user")
def test_a_hundred_proxies_leave_the_users_other_pipes_their_usual_size() -> None:
    # Past fs.pipe-user-pages-soft every new pipe of the user shrinks to 8 KiB: 1 MiB on both of
    # each proxy's pipes got there at 32 proxies.
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _MANY_PROXIES, str(root)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert int(out) == 65536
