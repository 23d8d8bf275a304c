"""Readiness: the database, Redis, the recordings storage, the evidence bucket, the scheduler.

Each check answers ok, skipped (not configured here) or failed with a short reason that names
no host, address, bucket or secret: the body of /readyz is public to whatever can reach it. The
full error goes to the log.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import boto3
import psycopg
import redis
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from django.conf import settings
from django.db import DatabaseError, connection
from psycopg import sql

from accounts.models import User
from audit.anchor.storage import evidence_enabled
from core.heartbeat import scheduler_heartbeat_age
from terminal.storage import recording_storage

logger = logging.getLogger(__name__)

_TIMEOUT_SECONDS = 2.0
_PROBE_CONFIG = Config(
    connect_timeout=_TIMEOUT_SECONDS, read_timeout=_TIMEOUT_SECONDS, retries={"max_attempts": 1, "mode": "standard"}
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok", "skipped" or "failed"
    reason: str = ""
    age_seconds: float | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"status": self.status}
        if self.reason:
            body["reason"] = self.reason
        if self.age_seconds is not None:
            body["age_seconds"] = round(self.age_seconds, 1)
        return body


class CheckFailed(Exception):
    """A check's own refusal, with a reason safe to show."""


# A thread or two for the database check, so a probe waits at most _DATABASE_DEADLINE for it.
_database_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz-database")
_DATABASE_DEADLINE = _TIMEOUT_SECONDS + 1.0


def _database_query() -> None:
    """Read one row of the people table, as every signed-in page does, under a statement and lock
    timeout. On PostgreSQL on a connection of the check's own, opened with a connect timeout and
    closed after: never one of the process's pool (production), whose connections may all be in
    use by requests, which makes the process busy, not unready; and no timeout of the check's goes
    on to a request."""
    if connection.vendor != "postgresql":  # SQLite (the demo): a file, no pool, nothing to wait on
        try:
            list(User.objects.values_list("pk", flat=True)[:1])
        finally:
            connection.close()
        return
    # Django's own parameters for the database (OPTIONS included: sslmode, application_name...), its pool left out.
    params = {key: value for key, value in connection.get_connection_params().items() if key != "cursor_factory"}
    params["connect_timeout"] = max(2, int(_TIMEOUT_SECONDS))  # libpq waits at least 2 s
    milliseconds = str(int(_TIMEOUT_SECONDS * 1000))
    people = sql.SQL("SELECT {} FROM {} LIMIT 1").format(
        sql.Identifier(User._meta.pk.column), sql.Identifier(User._meta.db_table)
    )
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
            [milliseconds, milliseconds],
        )
        conn.execute(people).fetchall()


def database_check() -> CheckResult:
    """The database answers a real read within seconds: one blocked by a lock, a server that
    stopped answering or a connect that hangs is a failure, never a hung probe."""
    future = _database_pool.submit(_database_query)
    try:
        future.result(timeout=_DATABASE_DEADLINE)
    except FutureTimeout:
        raise CheckFailed("timed out") from None
    except (DatabaseError, psycopg.Error) as exc:
        if "timeout" in str(exc).lower():
            raise CheckFailed("timed out") from exc
        raise
    return CheckResult("database", "ok")


def redis_check() -> CheckResult:
    if not settings.REDIS_URL:
        return CheckResult("redis", "skipped", "not configured")
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=_TIMEOUT_SECONDS, socket_timeout=_TIMEOUT_SECONDS
    )
    with client:
        client.ping()
    return CheckResult("redis", "ok")


@lru_cache(maxsize=8)
def _s3_client(endpoint_url: str | None, region: str | None, access_key: str | None, secret_key: str | None) -> Any:
    """A client that gives up within seconds (the storages' own retry for minutes)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        config=_PROBE_CONFIG,
    )


def _bucket_head(bucket: str, endpoint_url: str | None, region: str | None, storage: Any = None) -> None:
    access_key = getattr(storage, "access_key", None) if storage is not None else None
    secret_key = getattr(storage, "secret_key", None) if storage is not None else None
    _s3_client(endpoint_url, region, access_key, secret_key).head_bucket(Bucket=bucket)


def recordings_check() -> CheckResult:
    storage = recording_storage()
    bucket = getattr(storage, "bucket_name", None)
    if bucket:
        endpoint_url = getattr(storage, "endpoint_url", None)
        _bucket_head(str(bucket), endpoint_url, getattr(storage, "region_name", None), storage)
        return CheckResult("recordings_storage", "ok")
    location = getattr(storage, "location", None)
    if not location:
        return CheckResult("recordings_storage", "skipped", "not a local or S3 storage")
    # A local directory is made on the first save: the nearest existing one must be writable.
    path = Path(location)
    while not path.exists() and path != path.parent:
        path = path.parent
    if not (path.is_dir() and os.access(path, os.W_OK)):
        raise CheckFailed("not writable")
    return CheckResult("recordings_storage", "ok")


def evidence_check() -> CheckResult:
    if not evidence_enabled():
        return CheckResult("evidence_bucket", "skipped", "not configured")
    _bucket_head(str(settings.PASSPORT_EVIDENCE_BUCKET), settings.AWS_ENDPOINT_URL or None, settings.AWS_REGION)
    return CheckResult("evidence_bucket", "ok")


def scheduler_check() -> CheckResult:
    if not settings.REDIS_URL:
        return CheckResult("scheduler", "skipped", "no shared Redis to keep a heartbeat in")
    age = scheduler_heartbeat_age()
    if age is None:
        raise CheckFailed("no heartbeat")
    if age > settings.PASSPORT_SCHEDULER_STALE_SECONDS:
        return CheckResult("scheduler", "failed", "heartbeat stale", age_seconds=age)
    return CheckResult("scheduler", "ok", age_seconds=age)


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "database": database_check,
    "redis": redis_check,
    "recordings_storage": recordings_check,
    "evidence_bucket": evidence_check,
    "scheduler": scheduler_check,
}


def _reason(exc: BaseException) -> str:
    """What may be said about a failure: its kind, never its message (hosts, buckets, addresses)."""
    if isinstance(exc, CheckFailed):
        return str(exc)
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)):
        return "unreachable"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return {"404": "bucket missing", "NoSuchBucket": "bucket missing", "403": "access denied"}.get(code, "refused")
    if isinstance(exc, NoCredentialsError):
        return "no credentials"
    if isinstance(exc, BotoCoreError):
        return "unreachable"
    return "error"


def _run(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except Exception as exc:
        logger.warning("readiness check %s failed: %s", name, exc, exc_info=not isinstance(exc, CheckFailed))
        return CheckResult(name, "failed", _reason(exc))


def readiness_run() -> list[CheckResult]:
    """Every check, each on its own: one that fails or raises never hides another."""
    return [_run(name, check) for name, check in CHECKS.items()]


class _ReadinessCache:
    """The last answer, reused for PASSPORT_READYZ_CACHE_SECONDS; one probe at a time refreshes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._results: list[CheckResult] | None = None

    def results(self) -> list[CheckResult]:
        ttl = settings.PASSPORT_READYZ_CACHE_SECONDS
        with self._lock:
            if self._results is None or ttl <= 0 or time.monotonic() - self._at >= ttl:
                self._results = readiness_run()
                self._at = time.monotonic()
            return self._results

    def clear(self) -> None:
        with self._lock:
            self._results = None


readiness_cache = _ReadinessCache()
