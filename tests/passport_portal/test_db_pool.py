"""A web process holds at most PASSPORT_DB_POOL_MAX_SIZE PostgreSQL connections (deploy/README.md,
"PostgreSQL connections"): psycopg's pool, on in production. Requests, Channels' and the terminal's
database calls beyond the cap wait for a connection handed back; one that waits past
PASSPORT_DB_POOL_TIMEOUT_SECONDS fails, logged, and hangs nothing. Each runs in a process of its own
(tests/passport_portal/db_pool_probe.py) on the real settings, against this run's test database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from accounts.models import User
from audit.services import logbook_append
from passport_portal.settings.database import database_settings
from tests.passport_portal.production_env import start_production

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_README = ROOT / "deploy" / "README.md"


def probe(scenario: str, *args: str, max_size: int, timeout: int = 10) -> dict[str, Any]:
    """The probe's answer, run on this run's test database with the pool at ``max_size``; no backend of it left."""
    db = connection.settings_dict
    app = f"passport-pool-test-{uuid.uuid4().hex[:12]}"
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}?application_name={app}"
    env = {**os.environ, "DATABASE_URL": url, "PASSPORT_ENV": "test"}
    env.update(PASSPORT_DB_POOL_MAX_SIZE=str(max_size), PASSPORT_DB_POOL_TIMEOUT_SECONDS=str(timeout))
    done = subprocess.run(
        [sys.executable, "-m", "tests.passport_portal.db_pool_probe", scenario, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with connection.cursor() as cursor:  # the process is gone, and its pool's connections with it
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app])
        assert cursor.fetchone()[0] == 0
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.django_db
def test_requests_in_flight_share_at_most_the_pools_connections() -> None:
    found = probe("requests", "9", max_size=3)
    assert not found["started"]["holds"], "the start keeps no connection out of the pool"
    assert found["statuses"] == [200] * 9, "the requests beyond the cap waited for a connection and were served"
    assert found["most"] <= 3, f"PostgreSQL saw {found['most']} connections of one process"
    assert found["pids"] <= 3
    assert found["seconds"] >= 3 * 0.3  # 9 requests, 3 at a time
    assert found["after"]["pool_available"] == found["after"]["pool_size"], "every connection handed back"


@pytest.mark.django_db
def test_a_request_waiting_past_the_timeout_fails_logged_and_the_pool_serves_again() -> None:
    found = probe("timeout", max_size=2, timeout=1)
    assert found["held"] == [200, 200]
    assert found["refused"] == 500
    assert 0.9 <= found["waited"] < 5, "it waited the pool's timeout, no more"
    assert any("couldn't get a connection after 1.00 sec" in line for line in found["logged"]), found["logged"]
    assert found["after_release"] == 200
    assert found["most"] <= 2


@pytest.mark.django_db
def test_channels_and_terminal_database_calls_hand_their_connections_back() -> None:
    found = probe("async", "6", max_size=2, timeout=5)
    # 18 calls of 0.3 s through 2 connections: each handed back, or the waiting ones would time out
    assert found["most"] <= 2
    assert found["after"]["pool_available"] == found["after"]["pool_size"]


@pytest.mark.django_db
def test_readiness_check_leaves_its_timeouts_off_the_pooled_connection() -> None:
    found = probe("readiness", max_size=1)
    assert found["timeouts"] == ["0", "0"]


@pytest.mark.django_db
def test_a_slow_download_hands_its_connection_back_before_streaming() -> None:
    # A pool of one: a recording download (the view reads, then streams) whose client reads slowly
    # must not keep the connection until its last byte, or every other request waits, then fails.
    found = probe("stream", max_size=1, timeout=2)
    assert found["download"] == 200
    assert found["second"] == 200, "the page was served while the download was still being read"
    assert found["after"]["pool_available"] == found["after"]["pool_size"]


@pytest.fixture
def committed_logbook(transactional_db: None) -> Iterator[int]:
    """A reviewer and two Logbook entries, committed (the probe's process reads them); the reviewer's pk."""
    reviewer = User.objects.create_user(username="pool-reviewer", password=None, is_superuser=True)
    logbook_append(action="test.event", actor=None, detail={"n": 1})
    logbook_append(action="test.event", actor=None, detail={"n": 2})
    yield reviewer.pk
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")


@pytest.mark.django_db(transaction=True)
def test_a_slow_logbook_export_hands_its_connection_back_after_each_batch(committed_logbook: int) -> None:
    # The export reads a batch for each part it sends: between two, the connection goes back.
    found = probe("export", str(committed_logbook), max_size=1, timeout=2)
    assert found["download"] == 200
    assert found["second"] == 200, "the page was served while the export was still being read"
    assert found["after"]["pool_available"] == found["after"]["pool_size"]


@pytest.mark.django_db
def test_readiness_check_passes_while_requests_hold_every_pooled_connection() -> None:
    # A busy process is still ready: the check does not queue for the requests' connections.
    found = probe("readiness-busy", max_size=2, timeout=10)
    assert found["outcome"] == "ok", found
    assert found["waited"] < 3
    assert found["after"]["pool_available"] == found["after"]["pool_size"]


def test_pool_settings() -> None:
    pooled = database_settings("postgres://passport@db.example.test/passport", pool_max_size=10, pool_timeout_seconds=7)
    assert pooled["CONN_MAX_AGE"] == 0  # Django refuses a pool with persistent connections
    assert pooled["OPTIONS"]["pool"] == {"name": "passport", "min_size": 1, "max_size": 10, "timeout": 7}
    plain = database_settings("postgres://passport@db.example.test/passport", pool_max_size=0, pool_timeout_seconds=7)
    assert "pool" not in plain.get("OPTIONS", {}) and plain["CONN_MAX_AGE"] == 60
    sqlite = database_settings("sqlite:////tmp/passport.sqlite3", pool_max_size=10, pool_timeout_seconds=7)
    assert "pool" not in sqlite.get("OPTIONS", {}) and sqlite["CONN_MAX_AGE"] == 60


SETTINGS = "import passport_portal.settings as settings"
PROBE_POOL = (
    f"{SETTINGS}; import json; "
    "print(json.dumps([settings.DATABASES['default'].get('OPTIONS', {}).get('pool'), "
    "settings.DATABASES['default']['CONN_MAX_AGE']]))"
)


def test_production_pools_ten_connections_by_default() -> None:
    started = start_production(PROBE_POOL)
    assert started.returncode == 0, started.stderr
    pool, max_age = json.loads(started.stdout)
    assert pool == {"name": "passport", "min_size": 1, "max_size": 10, "timeout": 10}
    assert max_age == 0
    started = start_production(PROBE_POOL, PASSPORT_DB_POOL_MAX_SIZE="25", PASSPORT_DB_POOL_TIMEOUT_SECONDS="3")
    assert json.loads(started.stdout)[0] == {"name": "passport", "min_size": 1, "max_size": 25, "timeout": 3}
    started = start_production(PROBE_POOL, PASSPORT_DB_POOL_MAX_SIZE="0")
    assert json.loads(started.stdout) == [None, 60]


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"PASSPORT_DB_POOL_MAX_SIZE": "ten"}, "PASSPORT_DB_POOL_MAX_SIZE='ten' is not an integer"),
        ({"PASSPORT_DB_POOL_MAX_SIZE": "-1"}, "PASSPORT_DB_POOL_MAX_SIZE=-1 must be 0 (no pool"),
        ({"PASSPORT_DB_POOL_TIMEOUT_SECONDS": "0"}, "PASSPORT_DB_POOL_TIMEOUT_SECONDS=0 must be 1 or more"),
    ],
)
def test_a_bad_pool_setting_stops_the_start(changes: dict[str, str], said: str) -> None:
    started = start_production(SETTINGS, **changes)
    assert started.returncode != 0
    assert said in started.stderr


def test_deploy_readme_sizes_with_the_cap() -> None:
    text = " ".join(DEPLOY_README.read_text().split())
    sizing = re.search(r"\*\*PostgreSQL connections\.\*\*(.*?)\*\*", text)
    assert sizing, "deploy/README.md: the PostgreSQL connections paragraph"
    for said in ("PASSPORT_DB_POOL_MAX_SIZE", "PASSPORT_DB_POOL_TIMEOUT_SECONDS", "PgBouncer"):
        assert said in sizing[1]
