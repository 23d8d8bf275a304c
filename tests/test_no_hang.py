"""tests.plugins.no_hang: a run whose test left its event loop's thread running still ends, with
pytest's exit status, and names the thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.plugins import no_hang

ROOT = Path(__file__).resolve().parent.parent

LEAKING = textwrap.dedent(
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


def run(tmp_path: Path, *plugin: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """pytest on LEAKING, with no project configuration but the plugins named."""
    (tmp_path / "test_leak.py").write_text(LEAKING)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null"]
    command += ["--rootdir", str(tmp_path), "-o", "timeout_method=signal", *plugin, str(tmp_path / "test_leak.py")]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_a_run_with_a_thread_left_running_ends_with_pytests_status(tmp_path: Path) -> None:
    result = run(tmp_path, "-p", "tests.plugins.no_hang", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert "kept alive by threads still running" in result.stderr
    assert "ThreadPoolExecutor" in result.stderr


def test_a_run_that_ends_normally_is_not_held_up(tmp_path: Path) -> None:
    (tmp_path / "test_fine.py").write_text("def test_fine() -> None:\n    assert True\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null"]
    command += ["--rootdir", str(tmp_path), "-p", "tests.plugins.no_hang", str(tmp_path / "test_fine.py")]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept alive" not in result.stderr
    assert time.monotonic() - started < no_hang.GRACE_SECONDS


def test_without_the_plugin_the_same_run_does_not_end(tmp_path: Path) -> None:
    """What the plugin is for: the leak above keeps plain pytest alive after its last result."""
    with pytest.raises(subprocess.TimeoutExpired) as stopped:
        run(tmp_path, timeout=20)
    assert b"1 failed, 1 passed" in (stopped.value.stdout or b"")
