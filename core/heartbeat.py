"""The scheduler's heartbeat: a timestamp in Redis that a tiny periodic task refreshes.

Celery beat sends ``workers.tasks.scheduler_heartbeat`` every PASSPORT_SCHEDULER_HEARTBEAT_SECONDS
and a worker runs it, so a fresh stamp says that beat is sending and a worker is taking work.
``/readyz`` (passport_portal.health) and the metrics read its age. Without REDIS_URL (the
single-process demo) there is nowhere shared to keep it, and nothing is recorded.
"""

from __future__ import annotations

import time

import redis
from django.conf import settings

HEARTBEAT_KEY = "passport:scheduler:heartbeat"
_TIMEOUT_SECONDS = 2.0


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=_TIMEOUT_SECONDS, socket_timeout=_TIMEOUT_SECONDS)


def scheduler_heartbeat_record(now: float | None = None) -> None:
    """Stamp the time (seconds since the epoch); kept a day, so a long-stopped beat reads as absent."""
    url = settings.REDIS_URL
    if not url:
        return
    with _client(url) as client:
        client.set(HEARTBEAT_KEY, repr(time.time() if now is None else now), ex=86400)


def scheduler_heartbeat_age(now: float | None = None) -> float | None:
    """Seconds since the last heartbeat, or None when there is none. Raises redis.RedisError."""
    url = settings.REDIS_URL
    if not url:
        return None
    with _client(url) as client:
        raw = client.get(HEARTBEAT_KEY)
    if raw is None:
        return None
    try:
        stamp = float(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (time.time() if now is None else now) - stamp)
