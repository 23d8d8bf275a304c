"""A pytest plugin: the run ends when pytest is done, even if a test left a thread running.

A test stopped by pytest-timeout leaves the thread of its event loop (asgiref's async_to_sync runs
one per call) running, and Python waits for every such thread at exit: the run would then last
until CI gives up on it, with every result already printed. This plugin names such threads and
ends the process GRACE_SECONDS after pytest is done: with pytest's exit status, or 1 if that was 0
(a run that cannot end is a failure). It imports nothing of the project's.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

# How long the process gets to end by itself after pytest is done (idle worker threads of thread
# pools end at exit as usual) before it is ended.
GRACE_SECONDS = float(os.environ.get("PASSPORT_TEST_EXIT_GRACE_SECONDS", "30"))

_sessions: list[pytest.Session] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _sessions.append(session)


def _end_if_still_running() -> None:
    time.sleep(GRACE_SECONDS)
    threads = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    status = int(_sessions[-1].exitstatus) if _sessions else 1
    # A run that passed but could not end is a failure too, as its hang would have been.
    status = status or 1
    sys.stderr.write(
        f"\npytest finished but the process was kept alive by threads still running: "
        f"{', '.join(t.name for t in threads) or '(none named)'}. Ending the process (exit status {status}).\n"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A watchdog, a daemon thread: a process that ends normally ends it with it."""
    threading.Thread(target=_end_if_still_running, name="no-hang-watchdog", daemon=True).start()
