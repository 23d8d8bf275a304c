"""How an open `passport connect` ends, in a terminal (a pty): when the request ends under it (the
ssh session to Linux, the port forward to Windows), and on SIGTERM, also when started with SIGINT
ignored (as under nohup or a CI runner).

The real stack: devcloud, a Celery worker, OpenSSH through the data channel to the host's sshd.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from accounts.models import AwsAccount, User
from requests_app import services
from terminal.models import TerminalSession
from tests.cli.conftest import ROOT, Cli, active_request_from_cli
from tests.cli.test_ssh import _EchoServer
from tests.sshd import sshd_available
from tests.stack import Cloud, wait_for

# ssh goes through `passport proxy`, which opens the portal's WebSocket first: the ASGI portal.
CLI_PORTAL = "asgi"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
    pytest.mark.timeout(300),
]


class Terminal:
    """`passport connect` on a pty of its own, as from a person's terminal (it is the session's tty)."""

    def __init__(self, cli: Cli, *args: str, ignore_sigint: bool = False) -> None:
        self.master, slave = pty.openpty()

        def child_setup() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else signal.SIG_DFL)

        self.process = subprocess.Popen(
            [sys.executable, "-m", "passport_cli", "connect", *args],
            cwd=ROOT, env={**cli.env, "TERM": "xterm"}, stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True, preexec_fn=child_setup,
        )  # fmt: skip
        os.close(slave)
        self.seen = b""

    def read_until(self, wanted: Callable[[bytes], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not wanted(self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"no {what} in: {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 1))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: every process holding the pty has ended
                    chunk = b""
                if not chunk:  # all output is read; what is left is for the caller to wait for
                    return
                self.seen += chunk

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def shell_ready(self) -> None:
        # A shell answers: the product is computed remotely, so the echo of the typed line is not taken for it.
        self.write(b"echo READY$((6*7))\r")
        self.read_until(lambda seen: b"READY42" in seen, 120, "shell")
        assert b"READY42" in self.seen, self.text

    def finish(self, timeout: float) -> int:
        """Read to the end and return the exit code; the process is killed if it outlives ``timeout``."""
        try:
            self.read_until(lambda seen: self.process.poll() is not None, timeout, "exit")
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            os.close(self.master)

    @property
    def text(self) -> str:
        return self.seen.decode(errors="replace")


def test_a_completed_request_ends_connect_with_its_reason_and_exit_7(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    access_request = active_request_from_cli(cli, prod, aws.instance_id("web-1"), "pty")
    terminal = Terminal(cli, "web-1")
    terminal.shell_ready()

    services.access_request_complete(access_request=access_request, actor=access_request.requester)
    code = terminal.finish(timeout=90)

    assert "Traceback" not in terminal.text, terminal.text
    assert terminal.text.count("The access request was completed") == 1, terminal.text
    assert code == 7, terminal.text


def test_an_approver_ending_the_session_ends_connect_with_the_reason_once(
    prod: AwsAccount, aws: Cloud, cli: Cli
) -> None:
    """Through the recording proxy: the approver's reason, escaped, said once (on the session's stderr)."""
    from terminal.live_services import session_terminate

    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)
    access_request = active_request_from_cli(cli, prod, aws.instance_id("web-1"), "pty")
    terminal = Terminal(cli, "web-1")
    terminal.shell_ready()
    session = wait_for(
        lambda: TerminalSession.objects.filter(grant__request=access_request, ended_at__isnull=True).first(),
        what="the recorded shell",
    )
    approver = User.objects.get(username="approver")
    assert session_terminate(session=session, user=approver, reason="rotating keys \x1b]0;pwned\x07now")
    code = terminal.finish(timeout=90)

    assert "Traceback" not in terminal.text, terminal.text
    assert terminal.text.count("ended this session: rotating keys") == 1, terminal.text
    assert "\x1b]0;pwned" not in terminal.text and "\x07now" not in terminal.text, terminal.text
    assert code == 255, terminal.text  # ssh's own: the session was closed under it, the request is still active


@pytest.mark.parametrize("connection_open", [True, False], ids=["connection-open", "idle"])
def test_a_completed_request_ends_a_windows_forward_with_its_reason_and_exit_7(
    prod: AwsAccount, aws: Cloud, cli: Cli, connection_open: bool
) -> None:
    """The Windows path: a local port forwarded to Remote Desktop. With a connection open, its
    session ends with the request and connect asks why at once; idle, it finds out by asking the
    portal every few seconds (PASSPORT_CONNECT_WATCH_SECONDS; 10 by default)."""
    access_request = active_request_from_cli(cli, prod, aws.instance_id("win-ad-1"), "rdp")

    with _EchoServer() as rdp:
        # The stand-in listens on a free port, which the account must open like any port but 22 and 3389.
        AwsAccount.objects.filter(pk=prod.pk).update(extra_forward_ports=[rdp.port])
        # Open: the session's end alone must be enough, so the watch never polls within the wait below.
        watch = "3600" if connection_open else "1"
        cli.env["PASSPORT_CONNECT_WATCH_SECONDS"] = watch
        terminal = Terminal(cli, "win-ad-1", "--remote-port", str(rdp.port))
        terminal.read_until(lambda seen: b"press Ctrl-C" in seen, 60, "forwarding")
        match = re.search(rb"Host: 127\.0\.0\.1:(\d+)", terminal.seen)
        assert match, terminal.text
        connection = socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=30)
        try:
            connection.sendall(b"ping")
            assert connection.recv(4) == b"ping", "forwarded to the stand-in"
            if not connection_open:
                connection.close()
            services.access_request_complete(access_request=access_request, actor=access_request.requester)
            code = terminal.finish(timeout=60)
        finally:
            connection.close()

    assert "Traceback" not in terminal.text, terminal.text
    assert "The access request was completed; this session is closed." in terminal.text, terminal.text
    assert code == 7, terminal.text


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["sigint-default", "sigint-ignored"])
def test_sigterm_ends_connect_and_its_ssh(prod: AwsAccount, aws: Cloud, cli: Cli, ignore_sigint: bool) -> None:
    active_request_from_cli(cli, prod, aws.instance_id("web-1"), "pty")
    terminal = Terminal(cli, "web-1", ignore_sigint=ignore_sigint)
    terminal.shell_ready()
    children = _children(terminal.process.pid)
    assert children, "connect runs ssh"

    terminal.process.send_signal(signal.SIGTERM)
    code = terminal.finish(timeout=20)

    assert code == 143, terminal.text
    assert "Traceback" not in terminal.text, terminal.text
    assert "passport: terminated" in terminal.text
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return text[text.rindex(")") + 2 :].split()[0]
