"""Input through the CLI proxy to a command that does not read it: the portal holds the engineer's
ssh back (its SSH window stays closed), as sshd itself would, instead of taking everything it sends
into the web process; once the command reads, all of it arrives, and it is recorded.

Before the fix the portal took all of it: asyncssh resumes reading a session channel just after
``session_started`` (which had paused it until the instance's side opened), and the relay resumed it
again once open, whatever the instance's side said (terminal.proxy.backpressure ``ReadGate``)."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from pathlib import Path

import pytest

from audit.models import LogbookEntry
from terminal.models import TerminalSession
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied, _collect

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

PIECE = (b"y" * 1023 + b"\n") * 64
PIECES = 384  # 24 MiB
SLEEP = 10


def _daphne_rss_mib(url: str) -> float:
    """The resident memory of the daphne serving ``url`` (this test's own, found by its port)."""
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daphne" in args and port.encode() in args:
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    raise AssertionError(f"no daphne on port {port}")


@pytest.mark.parametrize("pty", [False, True], ids=["command", "terminal"])
def test_input_a_command_does_not_read_holds_the_client_back(proxied: Proxied, pty: bool) -> None:
    total = len(PIECE) * PIECES
    # The command sleeps, reading nothing, then counts everything it is given.
    command = f"stty raw -echo; sleep {SLEEP}; head -c {total} | wc -c" if pty else f"sleep {SLEEP}; wc -c"
    args = ["ssh", "-F", proxied.config, "-o", "BatchMode=yes", *(["-tt"] if pty else []), "web-1", command]
    # Measured after one connection came and went: what the first one costs the process is not this.
    assert proxied.ssh("true").returncode == 0
    before = _daphne_rss_mib(proxied.cli.env["PASSPORT_URL"])
    process = subprocess.Popen(
        args, env=proxied.cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = bytearray(), bytearray()
    readers = [_collect(process.stdout, out), _collect(process.stderr, err)]
    written = [0]

    def feed() -> None:
        assert process.stdin is not None
        for _ in range(PIECES):
            process.stdin.write(PIECE)
            process.stdin.flush()
            written[0] += len(PIECE)
        if not pty:
            process.stdin.close()  # the command's end of input (with a pty, head stops at the count)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    time.sleep(SLEEP - 3)  # the command is still asleep
    held_back, during = written[0], _daphne_rss_mib(proxied.cli.env["PASSPORT_URL"])
    feeder.join(180)
    assert not feeder.is_alive(), f"the rest of the input was never taken: {written[0] >> 20} MiB written"
    process.wait(timeout=60)
    for reader in readers:
        reader.join(10)
    print(f"written while the command slept: {held_back >> 20} MiB; daphne RSS {before:.0f} -> {during:.0f} MiB")
    # The engineer's side was held back (its own buffers and the windows between: a few MiB) ...
    assert held_back < 12 * 1024 * 1024, f"{held_back >> 20} MiB of {total >> 20} taken from a client nobody read"
    assert during - before < 16, f"daphne grew by {during - before:.0f} MiB holding input the command does not read"
    # ... and once the command read, every byte arrived.
    assert process.returncode == 0, bytes(err)
    assert out.strip() == str(total).encode(), bytes(out[-200:])

    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=proxied.grant, command=command, ended_at__isnull=False).first(),
        what="sealed",
    )
    assert record.recording_state == "complete" and record.bytes_in == total
    # A command (with a pty or not) is recorded byte for byte, and sealed with its digests.
    ended = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=record.pk)
    assert ended.detail["input_bytes"] == total
    assert ended.detail["input_sha256"] == hashlib.sha256(PIECE * PIECES).hexdigest()
