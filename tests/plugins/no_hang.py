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

# How long threads still running after the last test get to end on their own.
GRACE_SECONDS = 10.0

_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


def _left() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    deadline = time.monotonic() + GRACE_SECONDS
    while _left() and time.monotonic() < deadline:
        time.sleep(0.2)
    threads = _left()
    if not threads:
        return
    status = _exit_status[-1] if _exit_status else 1
    sys.stderr.write(
        f"\npytest finished (exit status {status}) with threads still running, which would keep the process "
        f"alive for ever: {', '.join(t.name for t in threads)}. Ending the process.\n"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
