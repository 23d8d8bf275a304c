"""A real OpenSSH sshd on a loopback port, inside a devcloud local host, for login tests.

The sshd runs in the host's private mount namespace (``devcloud.localhost.LocalHosts``):
users created there with useradd, and their authorized_keys, exist only in that host's
copy of /etc and /home, so this machine's accounts never change. Several sshd (different
configs, e.g. one that still accepts ssh-rsa CA signatures) can serve one host.

Usage::

    hosts = LocalHosts(tmp_path)
    sshd = LoopbackSshd(hosts, "i-0123456789abcdef0")
    sshd.add_user("rs-abcdefgh", authorized_keys=['cert-authority,principals="rs-abcdefgh" ssh-ed25519 AAAA...'])
    port = sshd.start(config_extra="LogLevel DEBUG1")
    ...  # openssh_run(port=port, ...) or asyncssh_run(port=port, ...)
    sshd.stop(); hosts.close()

Needs root (sshd, useradd, unshare) and Debian's openssh-server and openssh-client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from devcloud.localhost import LocalHosts

SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
_USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# The base configuration: public keys (certificates) only, nothing read from this
# machine's /etc/ssh. ``config_extra`` is placed before it, because in sshd_config the
# first value given for a keyword wins: the caller's options override these.
_BASE_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile none
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
LogLevel VERBOSE
PrintMotd no
PrintLastLog no
MaxStartups 100
Subsystem sftp internal-sftp
"""


class SshdError(RuntimeError):
    """The sshd could not be configured or started; the message carries its log."""


def sshd_available() -> str | None:
    """Why login tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "sshd, useradd and mount namespaces need root"
    for tool in (SSHD, SSH, SSH_KEYGEN, "/usr/bin/unshare", "/usr/bin/nsenter"):
        if not Path(tool).exists():
            return f"{tool} is not installed"
    return None


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LoopbackSshd:
    """One sshd process (and its config, host key and log) serving one local host."""

    def __init__(self, hosts: LocalHosts, instance_id: str, *, hostname: str | None = None, name: str = "sshd") -> None:
        self.hosts = hosts
        self.instance_id = instance_id
        # Only used when this creates the host's namespace; an existing host keeps its name.
        self.hostname = hostname or instance_id
        # Outside the host's /etc on purpose: the namespace sees /tmp as this machine does.
        self.directory = hosts.host_dir(instance_id) / f"sshd-{name}"
        self.config_path = self.directory / "sshd_config"
        self.log_path = self.directory / "sshd.log"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # --- the host -----------------------------------------------------------------------

    def run(self, command: str, *, input: str | None = None, check: bool = True, timeout: float = 30) -> str:
        """Run a bash command inside the host as root; returns its stdout."""
        process = self.hosts.popen(
            self.instance_id,
            self.hostname,
            ["bash", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = process.communicate(input, timeout=timeout)
        if check and process.returncode != 0:
            raise SshdError(f"{command!r} failed in {self.instance_id} ({process.returncode}): {stderr.strip()}")
        return stdout

    def add_user(self, username: str, *, authorized_keys: Sequence[str] = ()) -> None:
        """Create a login user in the host (and only there), with these authorized_keys lines."""
        user = _checked_username(username)
        # '*' instead of useradd's '!': without PAM, sshd refuses accounts whose password
        # is locked with '!', whatever the key; '*' only means "no password login".
        self.run(
            f"id -u {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}; usermod -p '*' {user}"
        )
        self.set_authorized_keys(username, authorized_keys)

    def set_authorized_keys(self, username: str, lines: Sequence[str]) -> None:
        """Replace the user's ~/.ssh/authorized_keys (owned by the user, mode 600)."""
        user = _checked_username(username)
        content = "".join(f"{line}\n" for line in lines)
        self.run(
            f"home=$(getent passwd {user} | cut -d: -f6) && "
            f'install -d -m 700 -o {user} -g {user} "$home/.ssh" && '
            f'cat > "$home/.ssh/authorized_keys.new" && '
            f'chown {user}:{user} "$home/.ssh/authorized_keys.new" && chmod 600 "$home/.ssh/authorized_keys.new" && '
            f'mv "$home/.ssh/authorized_keys.new" "$home/.ssh/authorized_keys"',
            input=content,
        )

    # --- the daemon ---------------------------------------------------------------------

    def start(self, *, config_extra: str = "", port: int | None = None, timeout: float = 15) -> int:
        """Start sshd (``-D -e``) on 127.0.0.1 and wait until it listens; returns the port.

        ``config_extra`` lines come first in the config, so they override the defaults
        (no ``Match`` blocks there: they would swallow the lines after them).
        """
        if self._process is not None and self._process.poll() is None:
            raise SshdError(f"sshd {self.directory.name} is already running on port {self.port}")
        self.directory.mkdir(parents=True, exist_ok=True)
        host_key = self.directory / "ssh_host_ed25519_key"
        if not host_key.exists():
            subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        # The privilege-separation directory. /run is this machine's (not per host);
        # creating an empty root-owned directory there changes no account.
        self.run("install -d -m 755 /run/sshd")
        attempts = 1 if port is not None else 3
        for _ in range(attempts):
            chosen = port if port is not None else free_loopback_port()
            base = _BASE_CONFIG.format(port=chosen, host_key=host_key)
            self.config_path.write_text(f"# Options of this test first: the first value wins.\n{config_extra}\n{base}")
            self.config_path.chmod(0o600)
            checked = self.run(f"{SSHD} -t -f {shlex.quote(str(self.config_path))} 2>&1", check=False)
            if checked.strip():
                raise SshdError(f"sshd rejects its config {self.config_path}: {checked.strip()}")
            if self._launch(chosen, timeout):
                self.port = chosen
                return chosen
        raise SshdError(f"sshd could not bind a port: {self.log_text()[-2000:]}")

    def _launch(self, port: int, timeout: float) -> bool:
        """Start the process and wait for its "Server listening" line; False if the port was taken."""
        with self.log_path.open("ab") as log:
            self._process = self.hosts.popen(
                self.instance_id,
                self.hostname,
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        listening = f"Server listening on 127.0.0.1 port {port}"
        while time.monotonic() < deadline:
            log_text = self.log_text()
            if listening in log_text:
                return True
            if self._process.poll() is not None:
                if "Address already in use" in log_text:
                    return False
                raise SshdError(f"sshd exited with {self._process.returncode}: {log_text[-2000:]}")
            time.sleep(0.05)
        self.stop()
        raise SshdError(f"sshd did not listen on port {port} within {timeout} s: {self.log_text()[-2000:]}")

    def stop(self) -> None:
        """Stop the listening sshd (its process group); sessions already open end with their clients."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_mark(self) -> int:
        """A position in the log; ``log_since`` reads what sshd wrote after it."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, mark: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def wait_for_log(self, pattern: str, *, since: int = 0, timeout: float = 5) -> str:
        """Wait until sshd logged ``pattern`` (a regex) after ``since``; returns that part of the log.

        sshd's per-connection process may write its last lines just after the client
        saw the outcome, so an assertion on the log waits for them.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(since)
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"sshd never logged {pattern!r}; it logged:\n{text[-3000:]}")
            time.sleep(0.05)

    def __enter__(self) -> LoopbackSshd:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _checked_username(username: str) -> str:
    # These names reach a root shell: only plain POSIX names are let through.
    if not _USERNAME_RE.fullmatch(username):
        raise ValueError(f"{username!r} is not a plain POSIX username")
    return username


# --- clients ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    stdout: str
    stderr: str


def openssh_run(
    *,
    port: int,
    username: str,
    identity_file: Path,
    certificate_file: Path | Sequence[Path] | None = None,
    command: str = "whoami",
    options: Sequence[str] = (),
    timeout: float = 30,
) -> LoginResult:
    """Log in with the OpenSSH client, using only this key (and certificates), and run ``command``.

    No config file, agent or known_hosts of this machine is used, so the result depends
    only on the key, the certificate and the server.
    """
    argv = [
        SSH,
        "-F",
        "/dev/null",
        "-i",
        str(identity_file),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "BatchMode=yes",
        "-o",
        "PreferredAuthentications=publickey",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-p",
        str(port),
    ]
    certificate_files = [certificate_file] if isinstance(certificate_file, Path) else list(certificate_file or ())
    for path in certificate_files:  # ssh offers them in this order
        argv += ["-o", f"CertificateFile={path}"]
    for option in options:
        argv += ["-o", option]
    argv += [f"{username}@127.0.0.1", command]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return LoginResult(ok=completed.returncode == 0, stdout=completed.stdout, stderr=completed.stderr)


def asyncssh_run(
    *,
    port: int,
    username: str,
    private_key: bytes | str,
    certificate: str | Sequence[str] | None = None,
    command: str = "whoami",
    timeout: float = 30,
    **options: Any,
) -> LoginResult:
    """Log in with asyncssh (as the portal's terminal does) and run ``command``.

    ``private_key`` is the key in OpenSSH or PEM form; ``certificate`` an OpenSSH
    certificate line, or several offered in order. A refused login is ``ok=False`` with
    the error in ``stderr``.
    """
    import asyncssh  # imported here: only login tests need it

    certificates = [certificate] if isinstance(certificate, str) else list(certificate or ())

    async def attempt() -> LoginResult:
        key = asyncssh.import_private_key(private_key)
        client_keys: Any = [(key, asyncssh.import_certificate(line)) for line in certificates] or [key]
        try:
            async with asyncssh.connect(
                "127.0.0.1",
                port,
                username=username,
                client_keys=client_keys,
                known_hosts=None,
                agent_path=None,
                config=None,
                preferred_auth="publickey",
                **options,
            ) as connection:
                result = await connection.run(command, check=False)
        except (asyncssh.Error, OSError) as error:
            return LoginResult(ok=False, stdout="", stderr=f"{type(error).__name__}: {error}")
        return LoginResult(ok=result.exit_status == 0, stdout=str(result.stdout or ""), stderr=str(result.stderr or ""))

    return asyncio.run(asyncio.wait_for(attempt(), timeout))
