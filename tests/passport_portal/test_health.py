"""/healthz and /readyz: each dependency failing on its own makes /readyz a 503 that names it
(and no host, port or bucket); /healthz never touches the database; probes by address over
plain http pass the host check and the https redirect; a flood of probes costs one check."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from audit.anchor.storage import evidence_bucket_ensure
from core.heartbeat import scheduler_heartbeat_age, scheduler_heartbeat_record
from passport_portal.health import checks
from passport_portal.health.checks import readiness_cache
from tests.stack import AWS_ENV, Cloud
from tests.terminal.storage_helpers import UNREACHABLE, s3_recordings, use_s3_recordings
from workers.tasks import scheduler_heartbeat

CLOSED_REDIS = "redis://127.0.0.1:9/0"


@pytest.fixture(autouse=True)
def fresh_readiness(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sees its own answer; recordings are local files in a writable directory; S3
    credentials are devcloud's, whichever test ran first."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    checks._s3_client.cache_clear()
    settings.PASSPORT_READYZ_CACHE_SECONDS = 0
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSPORT_EVIDENCE_BUCKET = ""
    readiness_cache.clear()
    yield
    readiness_cache.clear()


def _readyz(**extra: Any) -> tuple[int, dict[str, Any]]:
    response = Client().get("/readyz", **extra)
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert "default-src 'self'" in response["Content-Security-Policy"]
    return response.status_code, json.loads(response.content)


def test_healthz_answers_without_the_database_and_from_any_host(settings: Any) -> None:
    # No database access is allowed in this test: a query would fail it.
    settings.ALLOWED_HOSTS = ["passport.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = Client().get("/healthz", HTTP_HOST="10.0.3.7:8000")
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_everything_answers(settings: Any) -> None:
    scheduler_heartbeat()  # the task beat sends, run here as a worker would
    settings.ALLOWED_HOSTS = ["passport.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    status, body = _readyz(HTTP_HOST="10.0.3.7")
    assert status == 200, body
    assert body["status"] == "ready" and body["failed"] == []
    assert body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["redis"] == {"status": "ok"}
    assert body["checks"]["recordings_storage"] == {"status": "ok"}
    assert body["checks"]["evidence_bucket"] == {"status": "skipped", "reason": "not configured"}
    assert body["checks"]["scheduler"]["status"] == "ok"
    assert body["checks"]["scheduler"]["age_seconds"] < 5


def test_readyz_names_a_database_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler_heartbeat_record()
    default = connections["default"]
    broken = type(default)({**default.settings_dict, "HOST": "127.0.0.1", "PORT": "9"}, alias="broken")
    monkeypatch.setattr(checks, "connection", broken)
    try:
        status, body = _readyz()
    finally:
        broken.close()
    assert status == 503
    assert body["failed"] == ["database"]
    assert body["checks"]["database"]["status"] == "failed"
    assert "127.0.0.1" not in json.dumps(body)


@pytest.mark.django_db
def test_readyz_names_redis_on_a_closed_port(settings: Any) -> None:
    scheduler_heartbeat_record()
    settings.REDIS_URL = CLOSED_REDIS
    status, body = _readyz()
    assert status == 503
    # The heartbeat lives in Redis too: the scheduler cannot be vouched for either.
    assert body["failed"] == ["redis", "scheduler"]
    assert body["checks"]["redis"] == {"status": "failed", "reason": "unreachable"}
    assert "127.0.0.1" not in json.dumps(body) and ":9" not in json.dumps(body)


@pytest.mark.django_db
def test_readyz_names_an_unreachable_recordings_bucket(settings: Any) -> None:
    scheduler_heartbeat_record()
    settings.STORAGES = {**settings.STORAGES, "recordings": s3_recordings(UNREACHABLE, "recordings-secret-name")}
    status, body = _readyz()
    assert status == 503
    assert body["failed"] == ["recordings_storage"]
    assert body["checks"]["recordings_storage"] == {"status": "failed", "reason": "unreachable"}
    assert "recordings-secret-name" not in json.dumps(body)


@pytest.mark.django_db
def test_readyz_names_a_local_recordings_directory_it_cannot_write(settings: Any, tmp_path: Path) -> None:
    scheduler_heartbeat_record()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker / "recordings")},
        },
    }
    status, body = _readyz()
    assert status == 503
    assert body["checks"]["recordings_storage"] == {"status": "failed", "reason": "not writable"}


@pytest.mark.django_db
def test_readyz_names_an_unreachable_evidence_bucket(settings: Any) -> None:
    scheduler_heartbeat_record()
    settings.PASSPORT_EVIDENCE_BUCKET = "evidence-secret-name"
    settings.AWS_ENDPOINT_URL = UNREACHABLE
    status, body = _readyz()
    assert status == 503
    assert body["failed"] == ["evidence_bucket"]
    assert body["checks"]["evidence_bucket"] == {"status": "failed", "reason": "unreachable"}
    assert "evidence-secret-name" not in json.dumps(body)


@pytest.mark.django_db
def test_readyz_checks_both_buckets_on_real_s3(aws: Cloud, settings: Any) -> None:
    scheduler_heartbeat_record()
    use_s3_recordings(settings, aws.endpoint_url)
    settings.PASSPORT_EVIDENCE_BUCKET = f"evidence-{uuid.uuid4().hex[:16]}"
    status, body = _readyz()
    assert status == 503
    assert body["checks"]["recordings_storage"] == {"status": "ok"}
    assert body["checks"]["evidence_bucket"] == {"status": "failed", "reason": "bucket missing"}
    assert evidence_bucket_ensure() == "created"
    status, body = _readyz()
    assert status == 200, body
    assert body["checks"]["evidence_bucket"] == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_names_a_scheduler_without_a_heartbeat_or_with_a_stale_one(settings: Any) -> None:
    import redis

    redis.Redis.from_url(settings.REDIS_URL).delete("passport:scheduler:heartbeat")
    status, body = _readyz()
    assert (status, body["failed"]) == (503, ["scheduler"])
    assert body["checks"]["scheduler"] == {"status": "failed", "reason": "no heartbeat"}
    scheduler_heartbeat_record(now=time.time() - settings.PASSPORT_SCHEDULER_STALE_SECONDS - 30)
    status, body = _readyz()
    assert (status, body["failed"]) == (503, ["scheduler"])
    assert body["checks"]["scheduler"]["reason"] == "heartbeat stale"
    assert body["checks"]["scheduler"]["age_seconds"] >= settings.PASSPORT_SCHEDULER_STALE_SECONDS + 30
    scheduler_heartbeat()
    age = scheduler_heartbeat_age()
    assert age is not None and age < 5
    assert _readyz()[0] == 200


def test_beat_sends_the_heartbeat(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["scheduler-heartbeat"]
    assert entry["task"] == "workers.tasks.scheduler_heartbeat"
    assert entry["schedule"].run_every.total_seconds() < settings.PASSPORT_SCHEDULER_STALE_SECONDS


@pytest.mark.django_db
def test_probes_within_the_cache_time_share_one_check(settings: Any) -> None:
    scheduler_heartbeat_record()
    settings.PASSPORT_READYZ_CACHE_SECONDS = 60
    assert _readyz()[0] == 200
    settings.REDIS_URL = CLOSED_REDIS  # breaks Redis, but the answer of a moment ago stands
    assert _readyz()[0] == 200
    readiness_cache.clear()
    assert _readyz()[0] == 503


def test_only_get_and_head_are_answered() -> None:
    assert Client().post("/healthz").status_code == 405
    head = Client().head("/healthz")
    assert head.status_code == 200 and head.content == b""


def _lock_people_table() -> Any:
    """Another session holds an ACCESS EXCLUSIVE lock on the people table (a stuck migration, say):
    every read of it waits. Returns that session's connection; closing it releases the lock."""
    import psycopg

    params = connections["default"].get_connection_params()
    holder = psycopg.connect(**{key: value for key, value in params.items() if key != "cursor_factory"})
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE accounts_user IN ACCESS EXCLUSIVE MODE")
    return holder


@pytest.mark.django_db
def test_readyz_fails_fast_when_the_database_is_locked_rather_than_hanging() -> None:
    scheduler_heartbeat_record()
    holder = _lock_people_table()
    try:
        # Without the deadline the check would wait on the lock until it went: the answer says it stopped.
        status, body = _readyz()
    finally:
        holder.close()
    assert status == 503, body
    assert body["failed"] == ["database"]
    assert body["checks"]["database"] == {"status": "failed", "reason": "timed out"}
    readiness_cache.clear()
    assert _readyz()[0] == 200  # the lock gone, ready again


@pytest.mark.django_db
def test_readyz_gives_up_on_a_database_that_does_not_answer_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that takes the query and never answers (pg_sleep stands in for it), with the
    # server-side timeouts out of the way: the probe's own deadline still answers 503 in seconds.
    scheduler_heartbeat_record()
    monkeypatch.setattr(checks, "_TIMEOUT_SECONDS", 30.0)
    real_query = checks._database_query

    def hung() -> None:
        from django.db import connection

        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(6)")
        finally:
            connection.close()
        real_query()

    monkeypatch.setattr(checks, "_database_query", hung)
    # Waited out, the query would answer after 6 s and the check would pass: it says it timed out.
    status, body = _readyz()
    assert status == 503, body
    assert body["checks"]["database"] == {"status": "failed", "reason": "timed out"}
