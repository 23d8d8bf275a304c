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
import functools
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from devcloud.localhost import LocalHosts
from devcloud.sshd import SSH_KEYGEN, SSHD, SshdError, SshdProcess, free_loopback_port, run_in

SSH = "/usr/bin/ssh"
_USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

__all__ = [
    "SSH",
    "SSHD",
    "SSH_KEYGEN",
    "LoginResult",
    "LoopbackSshd",
    "SshdError",
    "asyncssh_run",
    "free_loopback_port",
    "openssh_run",
    "sshd_available",
]

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
{authorized_keys_file}StrictModes yes
LogLevel VERBOSE
PrintMotd no
PrintLastLog no
MaxStartups 100
Subsystem sftp internal-sftp
"""


def sshd_available() -> str | None:
    """Why login tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "sshd, useradd and mount namespaces need root"
    for tool in (SSHD, SSH, SSH_KEYGEN, "/usr/bin/unshare", "/usr/bin/nsenter"):
        if not Path(tool).exists():
            return f"{tool} is not installed"
    return None


class LoopbackSshd:
    """One extra sshd process (its own config, host key and log) serving one local host.

    Every devcloud local host already has its own sshd (``LocalHosts.sshd_port``), set up
    like a customer's server; this one is for tests that need another configuration
    (``config_extra``: TrustedUserCAKeys, old RSA policies...) beside or instead of it.
    """

    def __init__(self, hosts: LocalHosts, instance_id: str, *, hostname: str | None = None, name: str = "sshd") -> None:
        self.hosts = hosts
        self.instance_id = instance_id
        # Only used when this creates the host's namespace; an existing host keeps its name.
        self.hostname = hostname or instance_id
        # Outside the host's /etc on purpose: the namespace sees this directory as this machine does.
        self.directory = hosts.host_dir(instance_id) / f"sshd-{name}"
        self._daemon = SshdProcess(
            functools.partial(hosts.popen, instance_id, self.hostname),
            config_path=self.directory / "sshd_config",
            log_path=self.directory / "sshd.log",
        )
        self.config_path = self._daemon.config_path
        self.log_path = self._daemon.log_path

    @property
    def port(self) -> int | None:
        return self._daemon.port

    # --- the host -----------------------------------------------------------------------

    def run(self, command: str, *, input: str | None = None, check: bool = True, timeout: float = 30) -> str:
        """Run a bash command inside the host as root; returns its stdout."""
        code, stdout, stderr = run_in(self._daemon.spawn, command, input=input, timeout=timeout)
        if check and code != 0:
            raise SshdError(f"{command!r} failed in {self.instance_id} ({code}): {stderr.strip()}")
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

    def start(
        self, *, config_extra: str = "", port: int | None = None, timeout: float = 15, builtin_key_files: bool = False
    ) -> int:
        """Start sshd (``-D -e``) on 127.0.0.1 and wait until it listens; returns the port.

        ``config_extra`` lines come first in the config, so they override the defaults
        (no ``Match`` blocks there: they would swallow the lines after them). The base names
        ``.ssh/authorized_keys`` alone; with ``builtin_key_files`` no AuthorizedKeysFile at all,
        so sshd's built-in default (``.ssh/authorized_keys .ssh/authorized_keys2``), as on Debian.
        """
        key_files = "" if builtin_key_files else "AuthorizedKeysFile .ssh/authorized_keys\n"
        if self._daemon.running:
            raise SshdError(f"sshd {self.directory.name} is already running on port {self.port}")
        self.directory.mkdir(parents=True, exist_ok=True)
        host_key = self.directory / "ssh_host_ed25519_key"
        if not host_key.exists():
            subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)

        def render(chosen: int) -> str:
            base = _BASE_CONFIG.format(port=chosen, host_key=host_key, authorized_keys_file=key_files)
            return f"# Options of this test first: the first value wins.\n{config_extra}\n{base}"

        return self._daemon.start(render, port=port, attempts=0 if port is not None else 3, timeout=timeout)

    def stop(self) -> None:
        """Stop the listening sshd (its process group); sessions already open end with their clients."""
        self._daemon.stop()

    def log_text(self) -> str:
        return self._daemon.log_text()

    def log_mark(self) -> int:
        """A position in the log; ``log_since`` reads what sshd wrote after it."""
        return self._daemon.log_mark()

    def log_since(self, mark: int) -> str:
        return self._daemon.log_since(mark)

    def wait_for_log(self, pattern: str, *, since: int = 0, timeout: float = 5) -> str:
        """Wait until sshd logged ``pattern`` (a regex) after ``since``; returns that part of the log.

        sshd's per-connection process may write its last lines just after the client
        saw the outcome, so an assertion on the log waits for them.
        """
        return self._daemon.wait_for_log(pattern, since=since, timeout=timeout)

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


@contextlib.contextmanager
def _listener(host: str, handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A TCP listener on ``host`` whose accepted connections go to ``handle`` (with the event that
    says the listener is stopping), each in a thread of its own. Yields its port."""
    server = socket.socket()
    server.bind((host, 0))
    server.listen(8)
    server.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


@contextlib.contextmanager
def greeter(host: str, greeting: bytes) -> Iterator[int]:
    """A TCP listener on ``host`` that sends ``greeting`` to whoever connects, then closes: a
    stand-in for a service beyond the instance (a database in the VPC). Yields its port."""

    def greet(conn: socket.socket, stop: threading.Event) -> None:
        with conn, contextlib.suppress(OSError):
            conn.sendall(greeting)

    with _listener(host, greet) as port:
        yield port


@contextlib.contextmanager
def echo_server(host: str) -> Iterator[int]:
    """A TCP listener on ``host`` that sends back what each connection sends it, for as long as the
    connection stays open: a service a forward keeps talking to (a database session). Yields its port."""

    def echo(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            conn.settimeout(0.5)
            while not stop.is_set():
                try:
                    data = conn.recv(1024)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    with _listener(host, echo) as port:
        yield port


def echo_back(conn: socket.socket, data: bytes) -> bytes:
    """What an ``echo_server`` behind an open forward sends back for ``data``; b"" once the forward
    is closed."""
    try:
        conn.sendall(data)
        return conn.recv(64)
    except OSError:
        return b""


def connect_when_listening(port: int, deadline: float) -> socket.socket:
    """A TCP connection to ``port`` on 127.0.0.1, retried while nothing listens there yet (an
    ``ssh -L`` still starting) until ``deadline`` (``time.monotonic()``); read timeout 20 s."""
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
            continue
        conn.settimeout(20)
        return conn


def stop_ssh(process: subprocess.Popen[Any]) -> None:
    """End an ``ssh`` client started by a test (SIGTERM, as a person's ``kill`` would).

    OpenSSH 9.2's client sets a flag in its signal handler and checks it before it polls: a
    SIGTERM that lands between the check and the poll is noticed only when the poll wakes (up to
    ServerAliveInterval times ServerAliveCountMax, minutes). A second SIGTERM, once it waits in
    the poll, wakes it; SIGKILL is the last resort."""
    for signal_it, patience in ((process.terminate, 5), (process.terminate, 10), (process.kill, 10)):
        signal_it()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=patience)
            return
    process.wait(timeout=10)
