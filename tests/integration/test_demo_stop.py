"""scripts/demo stops everything it started when the script itself gets TERM or INT; moved with
PORT and PASSPORT_DEMO_DIR, its links and its banner follow.

The real script runs, on free ports and in its own directory, until the portal answers; then
only the script's pid is signalled (as `kill PID` would), and every process it had started must
be gone, and its ports free, within seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) from /proc, or None when the process is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every live process under ``root``, with its start time (so a reused pid is not taken for it)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))):
            stats[int(entry.name)] = found
    found_pids: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in stats.items():
            if ppid == parent and pid not in found_pids:
                found_pids[pid] = started
                frontier.append(pid)
    return found_pids


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_demo_script_stops_everything_it_started(tmp_path: Path, signum: int) -> None:
    ports = {"PORT": _free_port(), "DEVCLOUD_PORT": _free_port(), "IDP_PORT": _free_port()}
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PASSPORT_ENV")},
        **{name: str(port) for name, port in ports.items()},
        "PASSPORT_DEMO_DIR": str(tmp_path / "demo"),
        "PASSPORT_DEMO_SKIP_SETUP": "1",
    }
    log = (tmp_path / "demo.out").open("wb")
    # A session of its own, so the signal reaches only the script; INT as a terminal leaves it (a
    # runner that started this test in the background may have it ignored, and bash cannot trap that).
    script = subprocess.Popen(
        [str(ROOT / "scripts" / "demo")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ports['PORT']}/accounts/login/", timeout=2).close()
                break
            except OSError:
                assert script.poll() is None, (tmp_path / "demo.out").read_text(errors="replace")
                assert time.monotonic() < deadline, "the demo did not start in time"
                time.sleep(1)
        started = _descendants(script.pid)
        assert len(started) >= 3  # devcloud, the IdPs, the portal (and their own children)
        # Moved with PORT, the portal's links follow it: the install script (and the mails) lead
        # to where it listens, not to the settings' default (http://localhost:8000).
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['PORT']}/cli/install.sh", timeout=10) as answer:
            assert f"PORTAL_URL='http://127.0.0.1:{ports['PORT']}'" in answer.read().decode().splitlines()
        # The banner names the demo's own directory, wherever PASSPORT_DEMO_DIR put it.
        banner = (tmp_path / "demo.out").read_text(errors="replace")
        demo_dir = tmp_path / "demo"
        assert f"log in {demo_dir}/devcloud.log" in banner and f"listed in {demo_dir}/devcloud/manifest.json" in banner
        assert "var/demo" not in banner

        os.kill(script.pid, signum)
        script.wait(timeout=15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = {pid for pid, at in started.items() if (now := _stat(pid)) and now[1] == at}
            busy = [port for port in ports.values() if _listening(port)]
            if not left and not busy:
                break
            time.sleep(0.2)
        assert not left, f"still running after the script stopped: {sorted(left)}"
        assert not busy, f"ports still held: {busy}"
    finally:
        # Whatever the outcome, nothing of this run outlives the test.
        for pid, at in {**started, **_descendants(script.pid)}.items():
            if (now := _stat(pid)) and now[1] == at:
                os.kill(pid, signal.SIGKILL)
        if script.poll() is None:
            script.kill()
        script.wait(timeout=10)
        log.close()
