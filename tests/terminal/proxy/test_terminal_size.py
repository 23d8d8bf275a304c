"""The size of an ssh client's terminal (pty-req, then window-change) is bounded as the browser
terminal's is (terminal.frames MAX_COLS x MAX_ROWS): on the instance, in the recording's header and
its ``r`` events. asciinema-player, the auditor's player, stops at a 20000x20000 terminal, so an
engineer who ran ``stty rows 20000 cols 20000`` before ``ssh`` would have made the recording unplayable."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from terminal.frames import MAX_COLS, MAX_ROWS
from terminal.models import TerminalSession
from terminal.recorder import recording_kept
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied
from tests.terminal.storage_helpers import recording_bytes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

SIZE = re.compile(rb"(\d+) (\d+)\r\n")


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def read_until(master: int, seen: bytearray, pattern: re.Pattern[bytes], count: int, deadline: float) -> None:
    while len(pattern.findall(bytes(seen))) < count:
        assert time.monotonic() < deadline, bytes(seen)
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:  # the pty's other side closed
                break


def test_a_huge_terminal_is_bounded_on_the_instance_and_in_the_recording(
    proxied: Proxied, settings: Any, tmp_path: Path
) -> None:
    master, slave = os.openpty()
    set_size(slave, 20000, 20000)  # as `stty rows 20000 cols 20000` before ssh
    ssh = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-tt", "web-1", "stty size; read line; stty size"],
        env=proxied.cli.env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + 90
    try:
        read_until(master, seen, SIZE, 1, deadline)
        set_size(master, 25000, 30000)  # a window-change, as the terminal is resized
        ssh.send_signal(signal.SIGWINCH)
        time.sleep(1)
        os.write(master, b"go\r")
        read_until(master, seen, SIZE, 2, deadline)
        assert ssh.wait(timeout=60) == 0, bytes(seen)
    finally:
        if ssh.poll() is None:
            ssh.kill()
            ssh.wait()
        os.close(master)
    sizes = [(int(cols), int(rows)) for rows, cols in SIZE.findall(bytes(seen))]
    assert sizes == [(MAX_COLS, MAX_ROWS), (MAX_COLS, MAX_ROWS)], bytes(seen)

    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=proxied.grant, ended_at__isnull=False).first(), what="sealed"
    )
    settings.MEDIA_ROOT = tmp_path / "var" / "media"  # the daphne's recordings (PASSPORT_VAR_DIR)
    kept = recording_kept(record)
    assert kept.chunks and not kept.problem, kept.problem
    lines = recording_bytes(record).decode().splitlines()
    header = json.loads(lines[0])
    assert (header["width"], header["height"]) == (MAX_COLS, MAX_ROWS)
    resizes = [event[2] for event in map(json.loads, lines[1:]) if event[1] == "r"]
    assert resizes and set(resizes) == {f"{MAX_COLS}x{MAX_ROWS}"}, resizes
