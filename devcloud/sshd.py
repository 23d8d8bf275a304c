"""OpenSSH's sshd inside a local host: the machine's ``/usr/sbin/sshd`` on a loopback port.

Each local host gets one sshd of its own (``HostSshd``), started in the host's namespaces,
so it sees the host's users (/etc), homes and hostname, and runs its sessions in the
host's PID namespace. It is configured the way a customer's server is, in the host's own
/etc/ssh: its own host keys (generated there, never this machine's), public keys only, no
root login, sshd's built-in AuthorizedKeysFile (``.ssh/authorized_keys .ssh/authorized_keys2``:
Passport's provisioning writes its ``cert-authority`` lines in the first and removes the second)
and PAM, so sudo and account expiry behave as on a Debian server. Local hosts share this
machine's network, so it listens on a free port of 127.0.0.1 instead of port 22.

``SshdProcess`` is the part shared with the tests' extra daemons (``tests/sshd.py``):
start one sshd with some config in a host, wait until it listens, stop it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"

# Ed25519 and ECDSA cost milliseconds to generate; RSA 3072 costs about half a second per
# host, and every client Passport uses speaks Ed25519.
HOST_KEY_TYPES = ("ed25519", "ecdsa")

# Checked here (Debian 12, OpenSSH 9.2, as root in a container): PAM works in a local host's
# namespace (pam_loginuid, pam_limits, pam_env...), a user whose password is locked by
# useradd ('!') logs in with a key as on any Debian server, and sudo works for a user with
# an /etc/sudoers.d entry. tests/devcloud/test_sshd.py logs in with this setting.
USE_PAM = True

# The host's own sshd_config, as /etc/ssh/sshd_config inside the host. Drop-ins first, as
# Debian's file does (the first value given for a keyword wins); the host's
# sshd_config.d starts empty.
_HOST_CONFIG = """\
# sshd of devcloud local host {hostname}, written by devcloud at each start.
# Local hosts share this machine's network: this sshd listens on a loopback port, not 22.
Include /etc/ssh/sshd_config.d/*.conf
Port {port}
ListenAddress 127.0.0.1
{host_keys}
# /run is this machine's: no pid file there to collide with another host's sshd.
PidFile none
UsePAM {use_pam}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
"""

Spawn = Callable[..., "subprocess.Popen[Any]"]
"""Starts ``argv`` inside the host: ``spawn(argv, **popen_kwargs)``."""


class SshdError(RuntimeError):
    """An sshd could not be configured or started; the message carries its log."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_in(spawn: Spawn, command: str, *, input: str | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """Run a bash command in the host as root; returns (exit code, stdout, stderr)."""
    process = spawn(
        ["bash", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise
    return process.returncode, stdout, stderr


class SshdProcess:
    """One sshd process (``-D -e``) in a host, with its config file and log.

    ``config_path`` and ``log_path`` are paths as both this machine and the host see them
    (the host replaces only /etc, /home and /var/lib/passport: a file under the host's ``etc`` directory is
    named by its /etc path inside, see ``inside_path``).
    """

    def __init__(self, spawn: Spawn, *, config_path: Path, log_path: Path, config_path_inside: str | None = None):
        self.spawn = spawn
        self.config_path = config_path
        self.config_path_inside = config_path_inside or str(config_path)
        self.log_path = log_path
        self.port: int | None = None
        self.process: subprocess.Popen[Any] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(
        self, render_config: Callable[[int], str], *, port: int | None = None, attempts: int = 3, timeout: float = 15
    ) -> int:
        """Write the config for a port, check it, start sshd and wait until it listens.

        ``port`` (if given) is tried first, then ``attempts`` free ports picked at random:
        another process may take a picked port before sshd binds it. Returns the port.
        """
        if self.running:
            raise SshdError(f"sshd ({self.config_path}) is already running on port {self.port}")
        if not Path(SSHD).exists():
            raise SshdError(f"{SSHD} is not installed (Debian package openssh-server)")
        # The privilege-separation directory. /run is this machine's (not per host);
        # an empty root-owned directory there changes no account.
        code, _, stderr = run_in(self.spawn, "install -d -m 755 /run/sshd")
        if code != 0:
            raise SshdError(f"cannot create /run/sshd: {stderr.strip()}")
        candidates = [port] if port is not None else []
        candidates += [free_loopback_port() for _ in range(attempts)]
        for chosen in candidates:
            self.config_path.write_text(render_config(chosen))
            self.config_path.chmod(0o600)
            code, stdout, stderr = run_in(self.spawn, f"{SSHD} -t -f {shlex.quote(self.config_path_inside)}")
            if code != 0 or stdout.strip() or stderr.strip():
                raise SshdError(f"sshd rejects its config {self.config_path}: {(stdout + stderr).strip()}")
            if self._launch(chosen, timeout):
                self.port = chosen
                return chosen
        raise SshdError(f"sshd could not bind a port: {self.log_text()[-2000:]}")

    def _launch(self, port: int, timeout: float) -> bool:
        """Start the process and wait for its "Server listening" line; False if the port was taken."""
        mark = self.log_mark()
        with self.log_path.open("ab") as log:
            self.process = self.spawn(
                [SSHD, "-D", "-e", "-f", self.config_path_inside], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        listening = f"Server listening on 127.0.0.1 port {port}."
        while time.monotonic() < deadline:
            log_text = self.log_since(mark)
            if listening in log_text:
                return True
            if self.process.poll() is not None:
                if "Address already in use" in log_text:
                    return False
                raise SshdError(f"sshd exited with {self.process.returncode}: {log_text[-2000:]}")
            time.sleep(0.02)
        self.stop()
        raise SshdError(f"sshd did not listen on port {port} within {timeout} s: {self.log_since(mark)[-2000:]}")

    def stop(self, timeout: float = 5) -> None:
        """Stop the listening sshd; sessions already open end with their clients (or the host)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
        process.wait()

    # --- the log -----------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_mark(self) -> int:
        """A position in the log; ``log_since`` reads what sshd wrote after it."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, mark: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def wait_for_log(self, pattern: str, *, since: int = 0, timeout: float = 5) -> str:
        """Wait until sshd logged ``pattern`` (a regex) after ``since``; returns that part of the log.

        sshd's per-connection process may write its last lines just after the client saw
        the outcome, so an assertion on the log waits for them.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(since)
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"sshd never logged {pattern!r}; it logged:\n{text[-3000:]}")
            time.sleep(0.05)


class HostSshd(SshdProcess):
    """The sshd of one local host, configured in the host's /etc/ssh.

    ``host_dir`` is the host's directory (``LocalHosts.host_dir``): its ``etc`` is the host's
    /etc. The log is ``host_dir/sshd.log``. The port stays the same across restarts (the
    host's namespace dying and being recreated, or sshd being killed) while it is free.
    """

    def __init__(self, spawn: Spawn, *, host_dir: Path, hostname: str, use_pam: bool = USE_PAM) -> None:
        super().__init__(
            spawn,
            config_path=host_dir / "etc" / "ssh" / "sshd_config",
            config_path_inside="/etc/ssh/sshd_config",
            log_path=host_dir / "sshd.log",
        )
        self.hostname = hostname
        self.use_pam = use_pam

    def start_host_sshd(self, timeout: float = 15) -> int:
        """Generate missing host keys inside the host, then start (on the previous port if any)."""
        self._generate_host_keys()
        return self.start(self._render, port=self.port, timeout=timeout)

    def _generate_host_keys(self) -> None:
        commands = [
            f"[ -e /etc/ssh/ssh_host_{kind}_key ] || "
            f"{SSH_KEYGEN} -q -t {kind} -N '' -C root@{shlex.quote(self.hostname)} -f /etc/ssh/ssh_host_{kind}_key"
            for kind in HOST_KEY_TYPES
        ]
        code, _, stderr = run_in(self.spawn, "set -e; install -d -m 755 /etc/ssh; " + "; ".join(commands))
        if code != 0:
            raise SshdError(f"cannot generate the host keys of {self.hostname}: {stderr.strip()}")

    def _render(self, port: int) -> str:
        return _HOST_CONFIG.format(
            hostname=self.hostname,
            port=port,
            host_keys="\n".join(f"HostKey /etc/ssh/ssh_host_{kind}_key" for kind in HOST_KEY_TYPES),
            use_pam="yes" if self.use_pam else "no",
        )


def forget_machine_host_keys(etc: Path) -> None:
    """In a fresh copy of /etc: drop this machine's host keys and sshd drop-ins.

    A local host is another machine: it must not prove itself with this machine's keys,
    nor take this machine's sshd settings.
    """
    ssh = etc / "ssh"
    for key in ssh.glob("ssh_host_*"):
        key.unlink()
    drop_ins = ssh / "sshd_config.d"
    if drop_ins.is_dir():
        for entry in drop_ins.iterdir():
            if entry.is_file() or entry.is_symlink():
                entry.unlink()


def _kill_group(process: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
