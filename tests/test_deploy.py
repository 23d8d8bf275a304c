"""deploy/: the systemd units pass `systemd-analyze verify` (no warning either) with their paths
pointed at this checkout, keep their restart policy and hardening, the example environment file
reads the same to systemd and to a shell that sources it (deploy/README.md runs manage.py so), and
the proxy example passes the WebSocket and X-Forwarded-For the way the portal reads it. scripts/setup --test installs
systemd-analyze, so a missing tool is a failure here, not a skip."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings

from fleet.aws.runcommand import _wait_seconds

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def _verify(units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEPLOY / "verify-units"), str(units)], capture_output=True, text=True, timeout=120, check=False
    )


def test_systemd_analyze_is_installed() -> None:
    assert shutil.which("systemd-analyze"), "scripts/setup --test installs it (Debian package systemd)"


def test_the_units_verify() -> None:
    result = _verify(DEPLOY / "systemd")
    assert result.returncode == 0, result.stderr
    assert "passport-web@1.service" in result.stdout and "passport-scheduler.service" in result.stdout


def test_a_unit_with_a_setting_systemd_would_ignore_fails(tmp_path: Path) -> None:
    for unit in (DEPLOY / "systemd").iterdir():
        shutil.copy(unit, tmp_path / unit.name)
    worker = tmp_path / "passport-worker@.service"
    worker.write_text(worker.read_text().replace("Restart=always", "Restart=sometimes"))
    result = _verify(tmp_path)
    assert result.returncode == 1
    assert "passport-worker@1.service" in result.stderr or "sometimes" in result.stderr


def test_every_unit_restarts_and_is_hardened() -> None:
    assert {unit.name for unit in UNITS} == {
        "passport-web@.service",
        "passport-worker@.service",
        "passport-revoker@.service",
        "passport-scheduler.service",
    }
    for unit in UNITS:
        text = unit.read_text()
        for line in (
            "Restart=always",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/passport",
            "PrivateTmp=yes",
            "User=passport",
            "EnvironmentFile=/etc/passport/passport.env",
            # A file that leaves PASSPORT_ENV out still runs production (the file overrides it).
            "Environment=PASSPORT_ENV=production",
        ):
            assert re.search(rf"^{re.escape(line)}$", text, re.MULTILINE), f"{unit.name}: {line}"
        assert re.search(r"^RestartSec=\d+$", text, re.MULTILINE), unit.name


ENV_LINE = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")


def _as_systemd_reads(value: str) -> str:
    """A value as systemd's EnvironmentFile= gives it to the process: enclosing double quotes
    stripped, and inside them a backslash before " \\ ` $ dropped; an unquoted value as written."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r'\\(["\\`$])', r"\1", value[1:-1])
    return value


def _environment_file_declared(path: Path) -> dict[str, str]:
    declared: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            declared[match[1]] = _as_systemd_reads(match[2])
        else:
            assert not line.strip() or line.startswith("#"), f"not NAME=value, blank or a comment: {line!r}"
    return declared


def _as_bash_sources(path: Path, names: list[str]) -> tuple[dict[str, str], str]:
    """The environment a command started after `set -a; . file; set +a` in a clean bash gets (only
    ``names``), and what bash complained of."""
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", 'set -a; . "$1"; set +a; exec env -0', "bash", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    exported = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    return {name: exported[name] for name in names if name in exported}, result.stderr


def test_the_example_environment_file_reads_the_same_to_systemd_and_to_a_shell() -> None:
    """`set -a; . /etc/passport/passport.env` (deploy/README.md's way of running manage.py) gives every
    variable the value the units get: a value with spaces or < > unquoted would be a command to bash."""
    example = DEPLOY / "passport.env.example"
    declared = _environment_file_declared(example)
    assert declared["PASSPORT_EMAIL_FROM"] == "Passport <passport@example.com>"
    sourced, complaints = _as_bash_sources(example, sorted(declared))
    assert complaints == ""
    assert sourced == declared


def test_an_unquoted_value_a_shell_cannot_source_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "passport.env"
    broken.write_text("PASSPORT_ENV=production\nPASSPORT_EMAIL_FROM=Passport <passport@example.com>\n")
    declared = _environment_file_declared(broken)
    sourced, complaints = _as_bash_sources(broken, sorted(declared))
    assert sourced != declared and complaints


def test_the_workers_consume_the_revocation_queue_and_the_revoker_it_alone() -> None:
    """Expiry and removal are routed to `revocation` (CELERY_TASK_ROUTES): a unit that left it out
    would leave them queued forever; the revoker takes nothing else, so provisioning cannot fill it."""
    worker = (DEPLOY / "systemd" / "passport-worker@.service").read_text()
    revoker = (DEPLOY / "systemd" / "passport-revoker@.service").read_text()
    assert " --queues=celery,revocation " in worker
    assert " --queues=revocation " in revoker


def test_the_proxy_passes_websockets_and_appends_to_x_forwarded_for() -> None:
    conf = (DEPLOY / "nginx" / "passport.conf").read_text()
    websocket = conf[conf.index("location /ws/") :]
    websocket = websocket[: websocket.index("}")]
    assert "proxy_set_header Upgrade $http_upgrade;" in websocket
    assert "proxy_set_header Connection $connection_upgrade;" in websocket
    # Appended (the portal counts PASSPORT_TRUSTED_PROXY_COUNT from the right), never replaced by
    # what the client sent; X-Forwarded-Proto is the proxy's own.
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf
    # daphne must not take the leftmost X-Forwarded-For itself.
    web = (DEPLOY / "systemd" / "passport-web@.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=.*$", web, re.MULTILINE)
    assert "daphne" in exec_start and "--proxy-headers" not in exec_start
    env = (DEPLOY / "passport.env.example").read_text()
    assert "PASSPORT_TRUSTED_PROXY_COUNT=1" in env and "PASSPORT_TRUST_X_FORWARDED_PROTO=true" in env


@pytest.mark.parametrize("unit", ["passport-worker@.service", "passport-revoker@.service"])
def test_a_stopping_worker_is_given_the_longest_wait_on_a_run_command(unit: str) -> None:
    """Tasks are acknowledged late and a stop lets the running ones finish: systemd must not SIGKILL
    one that is still inside its documented wait for a Run Command, the longest an answer can make it
    (an ExpiresAfter far off is read as at most EXPIRY_ALLOWANCE_SECONDS over the documented total)."""
    text = (DEPLOY / "systemd" / unit).read_text()
    (stop,) = (int(value) for value in re.findall(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE))
    requested = datetime(2026, 1, 1, tzinfo=UTC)
    far_off = {"Command": {"RequestedDateTime": requested, "ExpiresAfter": requested + timedelta(days=1)}}
    longest = _wait_seconds(far_off, settings.PASSPORT_RUN_COMMAND_TIMEOUT)
    assert longest == 60 + 300 + 300 + 30  # delivery, the script's timeout, the allowance, the slack
    assert stop >= longest, f"{unit}: TimeoutStopSec={stop} < {longest} s a running task may still wait"
