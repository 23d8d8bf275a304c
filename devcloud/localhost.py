"""Local hosts: EC2 instances tagged ``devcloud:local=true`` that are real machines here.

Each local host is a long-lived namespace on this computer: its own mount namespace (a
copy of /etc bound over /etc, its own /home), its own PID namespace and its own hostname.
Run Command scripts and the host's sshd (``devcloud.sshd``: a real OpenSSH server on a
loopback port, started on first need) all run inside it, so a user created by one script
is seen by the next and by sshd, while the real machine and the other local hosts keep
their own accounts. The network is this machine's: a port opened in one host is
127.0.0.1:port for everyone.

Why a PID namespace too: two hosts copied from the same /etc hand out the same UIDs, and
``userdel``/``pkill -u`` look at every process in /proc; with a shared /proc, cleaning a
user on host A would kill host B's sessions or fail because B's user is "logged in".
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcloud import fleet
from devcloud.sshd import HostSshd, forget_machine_host_keys

# PID 1 of a host: binds the host's /etc and /home, sets its hostname, reaps orphans
# (so a dead user's processes do not linger as zombies that userdel counts as "in use"),
# and exits when devcloud's end of its stdin closes, taking the whole namespace with it.
_NAMESPACE_INIT = """
import os, signal, socket, subprocess, sys, threading
etc, home, hostname = sys.argv[1:4]
subprocess.run(["mount", "--bind", etc, "/etc"], check=True)
subprocess.run(["mount", "--bind", home, "/home"], check=True)
socket.sethostname(hostname)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
def exit_with_owner():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=exit_with_owner, daemon=True).start()
print("ready", flush=True)
while True:
    signal.sigwait({signal.SIGCHLD})
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
"""

ROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/bash",
    "LANG": "C.UTF-8",
}

# The SSM agent reports a script stopped by timeout or cancel with this code on Linux.
STOPPED_EXIT_CODE = 137

_OUTPUT_READ_LIMIT = 256 * 1024
_SSHD_RESTART_DELAY = 0.2

logger = logging.getLogger(__name__)


class LocalHostError(RuntimeError):
    """A local host could not be created or entered."""


@dataclass
class _Namespace:
    holder: subprocess.Popen[bytes]  # the `unshare` process; its child is the host's PID 1
    init_pid: int


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    cancelled: bool


class LocalHosts:
    """Creates, enters and tears down the local hosts of one devcloud."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._namespaces: dict[str, _Namespace] = {}
        self._runs: set[ScriptRun] = set()
        self._sshds: dict[str, HostSshd] = {}
        # Per host, for starting its namespace and its sshd: one slow start (copying /etc,
        # generating keys) keeps no other host waiting.
        self._start_locks: dict[str, threading.Lock] = {}
        self._sshd_locks: dict[str, threading.Lock] = {}
        self._generation = 0  # moves at close(): a host started meanwhile is not kept

    def host_dir(self, instance_id: str) -> Path:
        return self._root / instance_id

    def run(self, instance_id: str, command: Sequence[str] | str, **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside a local host (its sshd, a shell, a probe in a test).

        ``command`` is an argv, or a string run by ``bash -c``. Keyword arguments go to
        ``subprocess.Popen``; the process gets its own session and a clean root environment
        unless they say otherwise.
        """
        host = _local_host(instance_id)
        argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
        return self.popen(instance_id, host.computer_name, argv, **popen_kwargs)

    def sshd_port(self, instance_id: str) -> int:
        """The loopback port of the host's sshd, starting the host and its sshd if needed.

        Raises LocalHostError for an instance that is not a local host, and
        ``devcloud.sshd.SshdError`` if sshd cannot start.
        """
        port = self.sshd(instance_id).port
        assert port is not None
        return port

    def sshd(self, instance_id: str) -> HostSshd:
        """The host's sshd, running (started, or restarted if it died); for its port and log.

        Once started, sshd runs as long as the host: if it dies (killed by a script, or with
        the host's namespace), a watcher starts it again on the same port if it is free.
        """
        host = _local_host(instance_id)
        with self._lock:
            lock = self._sshd_locks.setdefault(instance_id, threading.Lock())
        with lock:
            with self._lock:
                daemon = self._sshds.get(instance_id)
            if daemon is None:
                daemon = HostSshd(
                    functools.partial(self.popen, instance_id, host.computer_name),
                    host_dir=self.host_dir(instance_id),
                    hostname=host.computer_name,
                )
            if not daemon.running:
                # First need, or sshd died (alone, or with the host's namespace).
                daemon.start_host_sshd()
                with self._lock:
                    self._sshds[instance_id] = daemon
                process = daemon.process
                threading.Thread(
                    target=self._watch_sshd,
                    args=(instance_id, daemon, process),
                    name=f"devcloud-sshd-{instance_id}",
                    daemon=True,
                ).start()
            return daemon

    def _watch_sshd(self, instance_id: str, daemon: HostSshd, process: subprocess.Popen[Any] | None) -> None:
        """Start the host's sshd again when it dies, unless it was stopped on purpose."""
        if process is None:
            return
        process.wait()
        time.sleep(_SSHD_RESTART_DELAY)  # no tight loop for an sshd that keeps dying
        with self._lock:
            if self._sshds.get(instance_id) is not daemon or daemon.process is not process:
                return  # stopped by close() (or moto's reset), or already started again
        try:
            self.sshd(instance_id)
        except (RuntimeError, OSError, subprocess.SubprocessError):  # LocalHostError, SshdError...
            logger.warning("the sshd of local host %s died and could not start again", instance_id, exc_info=True)

    def popen(
        self,
        instance_id: str,
        hostname: str,
        argv: Sequence[str],
        *,
        cwd: str | Path | None = None,
        **popen_kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in the host, creating the host (named ``hostname``) on first use."""
        namespace = self._namespace(instance_id, hostname)
        enter = ["nsenter", f"--target={namespace.init_pid}", "--mount", "--uts", "--pid"]
        if cwd is not None:
            enter.append(f"--wd={cwd}")
        popen_kwargs.setdefault("env", dict(ROOT_ENV))
        popen_kwargs.setdefault("start_new_session", True)
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen([*enter, "--", *argv], **popen_kwargs)

    def run_script(
        self,
        *,
        instance_id: str,
        hostname: str,
        script: str,
        run_dir: Path,
        timeout: float,
        env: dict[str, str],
        working_directory: str | None,
        on_start: Callable[[], None],
        on_finish: Callable[[ScriptResult], None],
    ) -> ScriptRun:
        """Run a bash script in a host, asynchronously: callbacks report start and end."""
        run = ScriptRun(self, instance_id, hostname, script, run_dir, timeout, env, working_directory)
        with self._lock:
            self._runs.add(run)

        def finish(result: ScriptResult) -> None:
            with self._lock:
                self._runs.discard(run)
            on_finish(result)

        threading.Thread(
            target=run.supervise, args=(on_start, finish), name=f"devcloud-run-{instance_id}", daemon=True
        ).start()
        return run

    def close(self) -> None:
        """Stop every script, sshd and host namespace (and with it everything inside)."""
        with self._lock:
            runs = list(self._runs)
            namespaces = list(self._namespaces.values())
            self._namespaces.clear()
            sshds = list(self._sshds.values())
            self._sshds.clear()
            self._generation += 1
        for run in runs:
            run.cancel()
        for daemon in sshds:
            daemon.stop(timeout=2)
        for namespace in namespaces:
            _stop_namespace(namespace)

    def _namespace(self, instance_id: str, hostname: str) -> _Namespace:
        with self._lock:
            namespace = self._namespaces.get(instance_id)
            if namespace is not None and namespace.holder.poll() is None:
                return namespace
            lock = self._start_locks.setdefault(instance_id, threading.Lock())
        # Hosts start side by side (copying /etc takes a while); each host once.
        with lock:
            with self._lock:
                namespace = self._namespaces.get(instance_id)
                if namespace is not None and namespace.holder.poll() is None:
                    return namespace
                generation = self._generation
            namespace = self._start_namespace(instance_id, hostname)
            with self._lock:
                if generation == self._generation:
                    self._namespaces[instance_id] = namespace
                    return namespace
            _stop_namespace(namespace)
            raise LocalHostError(f"the local hosts were closed while {instance_id} started")

    def _start_namespace(self, instance_id: str, hostname: str) -> _Namespace:
        host = self.host_dir(instance_id)
        etc, home = host / "etc", host / "home"
        if not etc.exists():
            _make_machine_files(host, hostname)
        log_path = host / "namespace.log"
        with log_path.open("ab") as log:
            holder = subprocess.Popen(
                [
                    "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc", "--uts",
                    "--", sys.executable, "-I", "-c", _NAMESPACE_INIT, str(etc), str(home), hostname,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )  # fmt: skip
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != b"ready":
            holder.kill()
            holder.communicate()  # closes our end of its stdin: a half-started PID 1 exits too
            reason = log_path.read_text(errors="replace").strip()
            raise LocalHostError(f"could not create local host {instance_id}: {reason}")
        return _Namespace(holder=holder, init_pid=_child_pid(holder.pid))


class ScriptRun:
    """One Run Command script in one host, watched by its own thread."""

    def __init__(
        self,
        hosts: LocalHosts,
        instance_id: str,
        hostname: str,
        script: str,
        run_dir: Path,
        timeout: float,
        env: dict[str, str],
        working_directory: str | None,
    ) -> None:
        self._hosts = hosts
        self._instance_id = instance_id
        self._hostname = hostname
        self._script = script
        self._run_dir = run_dir
        self._timeout = timeout
        self._env = env
        self._working_directory = working_directory
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._cancelled = False

    def cancel(self) -> None:
        """Kill the script's process group; the run then reports itself cancelled."""
        with self._lock:
            self._cancelled = True
            if self._process is not None and self._process.poll() is None:
                _kill_group(self._process.pid)

    def supervise(self, on_start: Callable[[], None], on_finish: Callable[[ScriptResult], None]) -> None:
        try:
            result = self._execute(on_start)
        except (OSError, subprocess.SubprocessError, LocalHostError) as error:
            result = ScriptResult(exit_code=1, stdout="", stderr=f"devcloud: {error}", timed_out=False, cancelled=False)
        on_finish(result)

    def _execute(self, on_start: Callable[[], None]) -> ScriptResult:
        self._run_dir.mkdir(parents=True, exist_ok=True)
        script_path = self._run_dir / "_script.sh"
        script_path.write_text(self._script)
        stdout_path, stderr_path = self._run_dir / "stdout", self._run_dir / "stderr"
        with self._lock:
            if self._cancelled:
                return ScriptResult(STOPPED_EXIT_CODE, "", "", timed_out=False, cancelled=True)
            with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
                self._process = self._hosts.popen(
                    self._instance_id,
                    self._hostname,
                    ["bash", str(script_path)],
                    cwd=self._working_directory or self._run_dir,
                    env=self._env,
                    stdout=stdout,
                    stderr=stderr,
                )
        on_start()
        timed_out = False
        try:
            exit_code = self._process.wait(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(self._process.pid)
            exit_code = self._process.wait()
        with self._lock:
            cancelled = self._cancelled and exit_code < 0 and not timed_out
        if timed_out or cancelled:
            exit_code = STOPPED_EXIT_CODE
        elif exit_code < 0:  # killed by a signal from elsewhere: report it like a shell does
            exit_code = 128 - exit_code
        return ScriptResult(
            exit_code=exit_code,
            stdout=_read_output(stdout_path),
            stderr=_read_output(stderr_path),
            timed_out=timed_out,
            cancelled=cancelled,
        )


def _make_machine_files(host: Path, hostname: str) -> None:
    """Give a new host its own /etc (a copy of this machine's) and an empty /home."""
    host.mkdir(parents=True, exist_ok=True)
    staging = host / "etc.partial"
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(["cp", "-a", "/etc", str(staging)], check=True, capture_output=True)
    (staging / "hostname").write_text(hostname + "\n")
    forget_machine_host_keys(staging)  # the host's sshd makes its own
    # sudo and sshd resolve the hostname; without this line sudo warns on every call.
    with (staging / "hosts").open("a") as hosts_file:
        hosts_file.write(f"\n127.0.1.1\t{hostname}\n")
    (host / "home").mkdir(mode=0o755, exist_ok=True)
    staging.rename(host / "etc")


def _local_host(instance_id: str) -> fleet.ManagedInstance:
    host = fleet.find_instance(instance_id)
    if host is None or not host.local:
        raise LocalHostError(f"{instance_id} is not a local host (tag it {fleet.TAG_LOCAL}=true)")
    return host


def _stop_namespace(namespace: _Namespace) -> None:
    # Killing PID 1 makes the kernel kill every process of the namespace.
    with contextlib.suppress(ProcessLookupError):
        os.kill(namespace.init_pid, signal.SIGKILL)
    namespace.holder.kill()
    namespace.holder.communicate()


def _child_pid(parent_pid: int) -> int:
    """The pid (as this machine sees it) of the only child of ``parent_pid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent_pid:
            return int(stat.parent.name)
    raise LocalHostError(f"the namespace holder {parent_pid} has no child")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _read_output(path: Path) -> str:
    with path.open("rb") as stream:
        return stream.read(_OUTPUT_READ_LIMIT).decode("utf-8", errors="replace")
