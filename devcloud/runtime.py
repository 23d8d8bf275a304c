"""The state devcloud keeps beside moto's, for the one devcloud running in this process.

moto's backends are process-wide, so the extensions' state is too: the handlers installed
on moto's response classes reach it through ``active()``.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devcloud.localhost import LocalHosts
from devcloud.runcommand import CommandStore
from devcloud.sessions import SessionRegistry


class Runtime:
    """Local hosts, Run Command state and sessions of one devcloud."""

    def __init__(self, *, state_dir: Path, stream_base_url: str) -> None:
        self.state_dir = state_dir
        self.hosts = LocalHosts(state_dir / "hosts")
        self.commands = CommandStore(self.hosts)
        self.sessions = SessionRegistry(stream_base_url)

    def reset(self) -> None:
        """Forget everything and stop every local process, as moto's reset forgets its state."""
        self.commands.clear()
        self.sessions.clear()
        self.hosts.close()


_lock = threading.Lock()
_active: Runtime | None = None


def activate(runtime: Runtime) -> None:
    global _active
    with _lock:
        if _active is not None:
            raise RuntimeError("a devcloud is already running in this process (moto's state is process-wide)")
        _active = runtime


def deactivate(runtime: Runtime) -> None:
    global _active
    with _lock:
        if _active is runtime:
            _active = None


def active() -> Runtime:
    with _lock:
        if _active is None:
            raise RuntimeError("no devcloud is running in this process")
        return _active


def run_in_host(instance_id: str, command: Sequence[str] | str, **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """Start a process inside a local host of the running devcloud (e.g. its sshd).

    ``command`` is an argv or a ``bash -c`` string; see ``LocalHosts.run``.
    """
    return active().hosts.run(instance_id, command, **popen_kwargs)
