"""OpenSSH through `passport proxy` and the portal's recording proxy, to a devcloud host's sshd:
commands and shells work as over any SSH server, and every one is recorded and in the Logbook."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from audit.models import LogbookEntry
from terminal.models import Client, RecordingState, SessionKind, TerminalSession
from terminal.recorder import recording_kept
from terminal.recording import raw_streams
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied
from tests.terminal.storage_helpers import recording_bytes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def sealed(pk: int) -> TerminalSession:
    return wait_for(
        lambda: TerminalSession.objects.filter(pk=pk, ended_at__isnull=False).first(), what="a sealed session"
    )


def entries(action: str, request_id: int) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action=action, request_id=request_id).order_by("id"))


def test_exec_streams_exit_status_and_recording(proxied: Proxied) -> None:
    # A command line with a newline, an escape sequence and $(...): run by the instance's shell, and
    # kept by the portal as data only.
    command = "printf 'out\\n'; printf 'err\\n' >&2; printf '\\033[31m$(id)\\n'\nexit 3"
    result = proxied.ssh(command)
    assert result.returncode == 3, result.stderr
    assert result.stdout == b"out\n\x1b[31m$(id)\n"
    assert result.stderr.endswith(b"err\n"), result.stderr

    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=proxied.grant, kind=SessionKind.EXEC).first(), what="the exec row"
    )
    record = sealed(record.pk)
    assert record.client == Client.CLI and record.command == command
    assert record.exit_status == 3
    assert record.recording_state == RecordingState.COMPLETE and record.recording_sha256
    assert "out" in record.transcript and "err" in record.transcript
    started = [e for e in entries("terminal.started", proxied.access_request.pk) if e.detail.get("client") == "cli"]
    assert started and started[0].detail["command"] == command and started[0].detail["kind"] == "exec"
    ended = [e for e in entries("terminal.ended", proxied.access_request.pk) if e.detail.get("kind") == "exec"]
    assert len(ended) == 1
    detail = ended[0].detail
    assert detail["command"] == command and detail["exit_status"] == 3 and detail["client"] == "cli"
    # Output counted as the instance sent it, stdout and stderr together.
    assert detail["output_bytes"] == len(result.stdout) + len(b"err\n")
    assert len(detail["output_sha256"]) == 64
    # The portal went through the data channel itself, as "cli-proxy".
    sessions = entries("session.started", proxied.access_request.pk)
    assert sessions and sessions[-1].detail["via"] == "cli-proxy"


def test_binary_stdin_and_stdout(proxied: Proxied) -> None:
    payload = bytes(range(256)) * 512
    result = subprocess.run(
        ["ssh", "-F", proxied.config, "-o", "BatchMode=yes", "web-1", "cat; printf done >&2"],
        env=proxied.cli.env, input=payload, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload
    assert result.stderr.endswith(b"done")
    # The command's output digest in the Logbook is of exactly these bytes.
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=proxied.grant, ended_at__isnull=False).first(), what="sealed"
    )
    ended = entries("terminal.ended", proxied.access_request.pk)
    assert ended[-1].detail["terminal_session"] == record.pk
    # stdout and stderr are two streams: sshd may read the stderr pipe before the last of stdout
    # (up to a pipe's 64 KiB), so "done" lands at some read boundary of the output, in arrival order.
    boundaries = range(0, len(payload) + 1, 64)
    arrivals = {hashlib.sha256(payload[:at] + b"done" + payload[at:]).hexdigest() for at in boundaries}
    assert ended[-1].detail["output_sha256"] in arrivals
    assert record.bytes_in >= len(payload)


def test_shell_with_a_pty(proxied: Proxied) -> None:
    script = b'stty size; echo "[$LANG]"; whoami; exit 5\n'
    process = subprocess.run(
        ["ssh", "-F", proxied.config, "-o", "BatchMode=yes", "-tt", "-o", "SetEnv=LANG=C.UTF-8", "web-1"],
        env=proxied.cli.env, input=script, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert process.returncode == 5, process.stderr
    username = proxied.grant.username
    assert username.encode() in process.stdout
    record = sealed(TerminalSession.objects.get(grant=proxied.grant, kind=SessionKind.SHELL).pk)
    assert record.client == Client.CLI and record.exit_status == 5
    assert record.recording_state == RecordingState.COMPLETE
    assert username in record.transcript and "whoami" in record.transcript_input
    ended = [e for e in entries("terminal.ended", proxied.access_request.pk) if e.detail.get("kind") == "shell"]
    assert ended and ended[0].detail["client"] == "cli" and ended[0].detail["exit_status"] == 5


def test_a_signal_ending_the_command_comes_back(proxied: Proxied) -> None:
    result = proxied.ssh("echo before; kill -TERM $$")
    assert result.returncode == 255 and result.stdout == b"before\n"  # OpenSSH: 255 for a remote signal
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=proxied.grant, ended_at__isnull=False).first(), what="sealed"
    )
    assert record.exit_status is None
    ended = entries("terminal.ended", proxied.access_request.pk)[-1]
    assert ended.detail["exit_signal"] == "TERM"


def test_a_real_terminal_its_size_and_window_changes(proxied: Proxied) -> None:
    """ssh on a pseudo-terminal: the pty's size at the start, then a window change, reach the shell."""
    import fcntl
    import os
    import pty
    import select
    import signal
    import struct
    import termios
    import time

    def set_size(fd: int, rows: int, cols: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    controller, terminal = pty.openpty()
    set_size(terminal, 31, 97)
    process = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-t", "web-1"],
        env={**proxied.cli.env, "TERM": "xterm-256color"}, stdin=terminal, stdout=terminal, stderr=terminal,
        start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    seen = b""

    def until(marker: bytes, timeout: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, seen[-500:]
            ready, _, _ = select.select([controller], [], [], 1)
            if ready:
                try:
                    seen += os.read(controller, 4096)
                except OSError:
                    break

    try:
        os.write(controller, b"echo SIZE-$(stty size | tr ' ' x)-$TERM\n")
        until(b"SIZE-31x97-xterm-256color")
        set_size(controller, 40, 120)
        os.killpg(process.pid, signal.SIGWINCH)
        time.sleep(1)
        os.write(controller, b"echo NOW-$(stty size | tr ' ' x)\n")
        until(b"NOW-40x120")
        os.write(controller, b"exit 4\n")
        assert process.wait(timeout=30) == 4
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    record = sealed(TerminalSession.objects.get(grant=proxied.grant, kind=SessionKind.SHELL).pk)
    assert record.exit_status == 4 and "NOW-40x120" in record.transcript


def test_a_shell_without_a_pty_is_recorded_byte_for_byte(proxied: Proxied, settings: Any, tmp_path: Path) -> None:
    # `ssh -T web-1 < script`: the shell reads a script that is not all UTF-8 (here in a comment, and
    # printed back), kept as it ran, with its digests in terminal.ended, as a command's would be.
    script = b"# \xff\xfe\x80\x81 \xc3\nprintf '\\377\\376\\200\\201'; echo done\nexit 0\n"
    result = subprocess.run(
        ["ssh", "-F", proxied.config, "-o", "BatchMode=yes", "-T", "web-1"],
        env=proxied.cli.env, input=script, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"\n\xff\xfe\x80\x81done\n"), result.stdout  # after the host's motd
    record = sealed(TerminalSession.objects.get(grant=proxied.grant, kind=SessionKind.SHELL).pk)
    assert record.recording_state == RecordingState.COMPLETE and not record.recording_note
    settings.MEDIA_ROOT = tmp_path / "var" / "media"  # the daphne's recordings (PASSPORT_VAR_DIR)
    kept = recording_kept(record)
    assert kept.chunks and not kept.problem, kept.problem
    streams = raw_streams(json.loads(line) for line in recording_bytes(record).decode().splitlines()[1:] if line)
    assert streams["i"] == script and streams["o"].endswith(b"\n\xff\xfe\x80\x81done\n"), streams
    [ended] = [e for e in entries("terminal.ended", proxied.access_request.pk) if e.detail.get("kind") == "shell"]
    assert ended.detail["input_sha256"] == hashlib.sha256(script).hexdigest()
    assert ended.detail["output_sha256"] == hashlib.sha256(streams["o"]).hexdigest()
    assert "recording_lossy" not in ended.detail
