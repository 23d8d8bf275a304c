"""Who is watching which open session, seen from every web process.

Each watcher (terminal.watch's WebSocket) says it is here every ``BEAT_SECONDS`` and is counted
until ``TTL_SECONDS`` after its last word: a web process that dies stops counting within that.
With ``REDIS_URL`` the marks are members of a sorted set per session in Redis, scored by when
they lapse; without it (the single-process demo) they live in this process, which is then the
only one. Plain synchronous calls: async code runs them off its event loop.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis
from django.conf import settings

BEAT_SECONDS = 3.0
TTL_SECONDS = 10.0
_KEY = "passport:live:{}:watchers"
_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Watcher:
    """One watching connection: ``id`` is its own (a person may watch from two tabs)."""

    id: str
    user_id: int
    name: str
    # An approver of the session's account (not its person): lets a moderated session run. As
    # read at the watcher's last beat (terminal.watch reads it again at each one).
    approver: bool

    def member(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_member(cls, raw: Any) -> Watcher | None:
        try:
            value = json.loads(raw)
            return cls(
                id=str(value["id"]),
                user_id=int(value["user_id"]),
                name=str(value["name"]),
                approver=bool(value["approver"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


_clients: dict[str, redis.Redis] = {}
_local: dict[int, dict[str, float]] = {}
_lock = threading.Lock()


def _client() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(
                url, socket_connect_timeout=_TIMEOUT_SECONDS, socket_timeout=_TIMEOUT_SECONDS
            )
    return client


def watcher_beat(*, session_id: int, watcher: Watcher, now: float | None = None) -> None:
    """Count this watcher for another ``TTL_SECONDS``."""
    at = time.time() if now is None else now
    lapses = at + TTL_SECONDS
    client = _client()
    if client is None:
        with _lock:
            _local.setdefault(int(session_id), {})[watcher.member()] = lapses
        return
    key = _KEY.format(int(session_id))
    with client.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(key, "-inf", at)
        pipe.zadd(key, {watcher.member(): lapses})
        pipe.expire(key, int(TTL_SECONDS * 6))
        pipe.execute()


def watcher_gone(*, session_id: int, watcher: Watcher) -> None:
    client = _client()
    if client is None:
        with _lock:
            _local.get(int(session_id), {}).pop(watcher.member(), None)
        return
    client.zrem(_KEY.format(int(session_id)), watcher.member())


def watchers(*, session_ids: list[int], now: float | None = None) -> dict[int, list[Watcher]]:
    """The watchers counted now for each session (lapsed marks are dropped), in a stable order."""
    at = time.time() if now is None else now
    found: dict[int, list[Any]] = {}
    client = _client()
    if client is None:
        with _lock:
            for session_id in session_ids:
                marks = _local.get(int(session_id), {})
                for member in [member for member, lapses in marks.items() if lapses <= at]:
                    del marks[member]
                found[session_id] = list(marks)
    elif session_ids:
        with client.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.zrangebyscore(_KEY.format(int(session_id)), at, "+inf")
            for session_id, members in zip(session_ids, pipe.execute(), strict=True):
                found[session_id] = list(members)
    result: dict[int, list[Watcher]] = {}
    for session_id, members in found.items():
        parsed = [Watcher.from_member(member) for member in members]
        result[session_id] = sorted((w for w in parsed if w is not None), key=lambda w: (w.name, w.id))
    return result
