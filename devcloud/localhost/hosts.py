"""The local hosts of one devcloud: created on first use, entered, their sshd kept running."""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devcloud import fleet
from devcloud.localhost.namespaces import (
    _NAMESPACE_INIT,
    ROOT_ENV,
    LocalHostError,
    _child_pid,
    _make_machine_files,
    _Namespace,
    _stop_namespace,
)
from devcloud.localhost.scripts import ScriptResult, ScriptRun
from devcloud.sshd import HostSshd

_SSHD_RESTART_DELAY = 0.2

logger = logging.getLogger(__name__)


class LocalHosts:
    """Creates, enters and tears down the local hosts of one devcloud."""

    def __init__(self, root: Path, *, cpus: frozenset[int] | None = None) -> None:
        self._root = root
        # The CPUs every process of the hosts runs on (None: any). An instance has its own
        # vCPUs; on one small machine the benchmarks give the hosts cores the portal does not use.
        self.cpus = cpus
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
        pin = ["taskset", "--cpu-list", ",".join(map(str, sorted(self.cpus)))] if self.cpus else []
        return subprocess.Popen([*pin, *enter, "--", *argv], **popen_kwargs)

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
        passport_state = host / "var/lib/passport"  # also for hosts made before it was their own
        passport_state.mkdir(mode=0o755, parents=True, exist_ok=True)
        log_path = host / "namespace.log"
        with log_path.open("ab") as log:
            holder = subprocess.Popen(
                [
                    "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc", "--uts",
                    "--", sys.executable, "-I", "-c", _NAMESPACE_INIT,
                    str(etc), str(home), str(passport_state), hostname, str(host.resolve()),
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


def _local_host(instance_id: str) -> fleet.ManagedInstance:
    host = fleet.find_instance(instance_id)
    if host is None or not host.local:
        raise LocalHostError(f"{instance_id} is not a local host (tag it {fleet.TAG_LOCAL}=true)")
    return host
