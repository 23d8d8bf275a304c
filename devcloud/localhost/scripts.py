"""One Run Command script in one local host: run, timed out or cancelled, and its output."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from devcloud.localhost.namespaces import LocalHostError

# The SSM agent reports a script stopped by timeout or cancel with this code on Linux.
STOPPED_EXIT_CODE = 137

_OUTPUT_READ_LIMIT = 256 * 1024


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    cancelled: bool


class HostProcesses(Protocol):
    """Where a script's process starts: ``LocalHosts`` (``devcloud.localhost.hosts``), which runs its
    scripts through this module, so named by what it does rather than imported."""

    def popen(
        self,
        instance_id: str,
        hostname: str,
        argv: Sequence[str],
        *,
        cwd: str | Path | None = None,
        **popen_kwargs: Any,
    ) -> subprocess.Popen[Any]: ...


class ScriptRun:
    """One Run Command script in one host, watched by its own thread."""

    def __init__(
        self,
        hosts: HostProcesses,
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


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _read_output(path: Path) -> str:
    with path.open("rb") as stream:
        # Every byte kept (``surrogateescape``): what the service answers with is cut from the bytes.
        return stream.read(_OUTPUT_READ_LIMIT).decode("utf-8", errors="surrogateescape")
