"""A pytest plugin: the run ends when pytest is done, even if a test left a thread running.

A test stopped by pytest-timeout leaves the thread of its event loop (asgiref's async_to_sync runs
one per call) running, and Python waits for every such thread at exit: the run would then last
until CI gives up on it, with every result already printed. This plugin names such threads and
ends the process with pytest's own exit status. It imports nothing of the project's.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

# How long the process gets to end by itself after pytest is done (idle worker threads of thread
# pools end at exit as usual) before it is ended.
GRACE_SECONDS = 30.0

_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


def _end_if_still_running() -> None:
    time.sleep(GRACE_SECONDS)
    threads = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    status = _exit_status[-1] if _exit_status else 1
    sys.stderr.write(
        f"\npytest finished (exit status {status}) but the process was kept alive by threads still running: "
        f"{', '.join(t.name for t in threads) or '(none named)'}. Ending the process.\n"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A watchdog, a daemon thread: a process that ends normally ends it with it."""
    threading.Thread(target=_end_if_still_running, name="no-hang-watchdog", daemon=True).start()
