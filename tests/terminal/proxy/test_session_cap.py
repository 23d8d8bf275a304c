"""A CLI connection counts under the cap on open sessions (terminal.slots) exactly as long as its SSH
connection is open: after its first shell or command has ended too, while it still carries ``ssh -L``
forwards or sits idle (a ControlMaster kept by ControlPersist), and a later command on the same
connection takes the connection's place instead of a second one."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import AwsAccount
from terminal import slots
from terminal.models import SessionKind, SessionSlot, TerminalSession
from tests.sshd import connect_when_listening, sshd_available
from tests.stack import Cloud, free_port, open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def _open(proxied: Proxied) -> tuple[int, int]:
    return slots.sessions_open(user=proxied.alice, grant=proxied.grant)


def _connect(port: int, deadline: float) -> socket.socket:
    """A TCP connection through the forward that has read the instance's sshd banner."""
    conn = connect_when_listening(port, deadline)
    assert conn.recv(64).startswith(b"SSH-2.0-")
    return conn


def _ended_commands(proxied: Proxied) -> int:
    return TerminalSession.objects.filter(grant=proxied.grant, kind=SessionKind.EXEC, ended_at__isnull=False).count()


def test_a_connection_whose_command_ended_keeps_counting_while_a_forward_is_open(
    proxied: Proxied, prod: AwsAccount, aws: Cloud
) -> None:
    sshd_port = aws.devcloud.runtime.hosts.sshd_port(proxied.grant.instance.instance_id)
    open_forward_ports(prod, [sshd_port])
    port = free_port()
    ssh = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-L", f"{port}:127.0.0.1:{sshd_port}", "web-1", "sleep 3"],
        env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    forwarded: socket.socket | None = None
    try:
        forwarded = _connect(port, time.monotonic() + 60)
        wait_for(lambda: _ended_commands(proxied) == 1, what="the command's row sealed")
        # ssh waits for the forwarded connection: the SSH connection (its Session Manager session,
        # its login) is still open, and still counts.
        assert ssh.poll() is None
        assert _open(proxied) == (1, 1)

        # Past the slot's time it still counts: the connection keeps touching it.
        SessionSlot.objects.update(created_at=timezone.now() - timedelta(seconds=slots.OPENING_SECONDS + 60))
        wait_for(lambda: _open(proxied) == (1, 1), timeout=slots.SLOT_TOUCH_SECONDS + 15, what="the slot touched")
        assert ssh.poll() is None

        forwarded.close()
        forwarded = None
        ssh.wait(timeout=30)
    finally:
        if forwarded is not None:
            forwarded.close()
        if ssh.poll() is None:
            ssh.kill()
    # The connection closed: its place is free.
    wait_for(lambda: _open(proxied) == (0, 0) and not SessionSlot.objects.exists(), what="the place freed")


def test_an_idle_connection_kept_by_controlpersist_counts_once_until_it_closes(proxied: Proxied) -> None:
    control = Path(tempfile.mkdtemp(prefix="pp-", dir="/tmp")) / "c"  # a socket path short enough
    mux = ["-oControlMaster=auto", f"-oControlPath={control}", "-oControlPersist=yes"]
    try:
        first = proxied.ssh(*mux, "true")
        assert first.returncode == 0, first.stderr
        wait_for(lambda: _ended_commands(proxied) == 1, what="the first command's row sealed")
        assert _open(proxied) == (1, 1)  # the master connection is still open

        # A second command through the same connection takes the connection's place, not another. It
        # runs until the test ends its input, so the count is read while it surely runs: "sleep 3" gave
        # a loaded machine three seconds of wall clock to see its row and count, or the test failed.
        second = subprocess.Popen(
            ["ssh", "-F", proxied.config, "-oBatchMode=yes", *mux, "web-1", "cat >/dev/null"],
            env=proxied.cli.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert second.stdin is not None
        wait_for(
            lambda: TerminalSession.objects.filter(grant=proxied.grant, ended_at__isnull=True).exists(),
            what="the second command's row",
        )
        assert _open(proxied) == (1, 1)
        second.stdin.close()  # the command reads EOF and ends
        assert second.wait(timeout=30) == 0
        wait_for(lambda: _ended_commands(proxied) == 2, what="the second command's row sealed")
        assert _open(proxied) == (1, 1)
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(
                ["ssh", "-F", proxied.config, *mux, "-O", "exit", "web-1"],
                env=proxied.cli.env, capture_output=True, timeout=30, check=False,
            )  # fmt: skip
    wait_for(lambda: _open(proxied) == (0, 0) and not SessionSlot.objects.exists(), what="the place freed")
