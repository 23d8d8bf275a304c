"""The scheduler's heartbeat end to end: the real beat process sends the task, the real worker
runs it, and /readyz reads it from Redis; without it the scheduler check fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import Client

from core.heartbeat import HEARTBEAT_KEY, scheduler_heartbeat_age
from passport_portal.health.checks import readiness_cache
from tests.stack import WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db"), pytest.mark.timeout(300)]


def _scheduler_check() -> dict[str, Any]:
    readiness_cache.clear()
    checks: dict[str, Any] = json.loads(Client().get("/readyz").content)["checks"]
    return checks["scheduler"]


def test_beat_and_a_worker_keep_the_heartbeat_fresh(worker: WorkerProcess, settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSPORT_EVIDENCE_BUCKET = ""
    redis.Redis.from_url(settings.REDIS_URL).delete(HEARTBEAT_KEY)
    assert _scheduler_check() == {"status": "failed", "reason": "no heartbeat"}
    # beat sends it every PASSPORT_SCHEDULER_HEARTBEAT_SECONDS (15 s): a new stamp well within a minute.
    (age,) = wait_for(
        lambda: (age,) if (age := scheduler_heartbeat_age()) is not None else None,
        timeout=60,
        what="a heartbeat from beat through the worker",
    )
    assert age < 10
    scheduler = _scheduler_check()
    assert scheduler["status"] == "ok" and scheduler["age_seconds"] < 30
    assert settings.PASSPORT_SCHEDULER_HEARTBEAT_SECONDS < settings.PASSPORT_SCHEDULER_STALE_SECONDS
