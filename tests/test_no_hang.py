"""tests.plugins.no_hang: a run whose test left a thread running still ends, and fails, naming the
thread; a run that ends by itself is not held up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TIMED_OUT_LOOP = textwrap.dedent(
    """
    import asyncio

    import pytest
    from asgiref.sync import async_to_sync


    def test_passes() -> None:
        assert True


    @pytest.mark.timeout(2)
    def test_stopped_by_the_timeout_with_its_loop_still_running() -> None:
        async def never() -> None:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    continue  # the way a careless clean-up ignores asyncio.run's cancellation

        async_to_sync(never)()
    """
)

PASSING_WITH_A_THREAD_LEFT = textwrap.dedent(
    """
    import threading
    import time


    def test_passes_but_leaves_a_thread() -> None:
        threading.Thread(target=time.sleep, args=(3600,), name="left-behind").start()
    """
)


def pytest_command(tmp_path: Path, source: str, *, plugin: bool = True) -> list[str]:
    """pytest on ``source``, with no project configuration but this plugin (``plugin``)."""
    test_file = tmp_path / "test_subject.py"
    test_file.write_text(source)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null"]
    command += ["--rootdir", str(tmp_path), "-o", "timeout_method=signal"]
    command += ["-p", "tests.plugins.no_hang"] if plugin else []
    return [*command, str(test_file)]


def pytest_on(
    tmp_path: Path, source: str, *, plugin: bool = True, grace: float = 2, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """pytest on ``source`` in a process of its own (``pytest_command``), run to its end."""
    environment = {**os.environ, "PASSPORT_TEST_EXIT_GRACE_SECONDS": str(grace)}
    return subprocess.run(
        pytest_command(tmp_path, source, plugin=plugin),
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_a_run_whose_timed_out_test_left_its_loop_running_ends_with_pytests_status(tmp_path: Path) -> None:
    result = pytest_on(tmp_path, TIMED_OUT_LOOP)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert "kept alive by threads still running: ThreadPoolExecutor" in result.stderr


def test_a_passing_run_that_cannot_end_fails(tmp_path: Path) -> None:
    result = pytest_on(tmp_path, PASSING_WITH_A_THREAD_LEFT)
    assert "1 passed" in result.stdout
    assert result.returncode == 1, result.stdout + result.stderr
    assert "kept alive by threads still running: left-behind" in result.stderr


def test_a_run_that_ends_by_itself_is_not_held_up(tmp_path: Path) -> None:
    # Held for the grace, the run would outlast pytest_on's timeout (60 s) and raise.
    result = pytest_on(tmp_path, "def test_fine() -> None:\n    assert True\n", grace=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept alive" not in result.stderr


def test_without_the_plugin_the_same_run_does_not_end(tmp_path: Path) -> None:
    """What the plugin is for: the leak above keeps plain pytest alive after its last result."""
    process = subprocess.Popen(pytest_command(tmp_path, TIMED_OUT_LOOP, plugin=False), cwd=ROOT, stdout=subprocess.PIPE)
    try:
        # However slow the machine, the run reports its results (a generous wait for that line)...
        seen = b""
        lines = iter(process.stdout.readline, b"") if process.stdout else iter(())
        waited = threading.Timer(120, process.kill)
        waited.start()
        try:
            for line in lines:
                seen += line
                if b"1 failed, 1 passed" in line:
                    break
        finally:
            waited.cancel()
        assert b"1 failed, 1 passed" in seen, seen
        # ...and then does not end: the loop's thread keeps it alive.
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    finally:
        process.kill()
        process.wait(timeout=30)
