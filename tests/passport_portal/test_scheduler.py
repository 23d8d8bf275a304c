"""beat on two hosts, one active (passport_portal.scheduler): only the holder of the advisory lock
sends, but for the Logbook's checkpoint, which every beat sends; when its host is lost (its
database session ends), the standby takes over.

Two schedulers in one process stand for the two hosts: each has a connection of its own, as
each host would. What beat would send is recorded instead of reaching the broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery.beat import PersistentScheduler, Scheduler
from django.conf import settings as django_settings
from django.db import connection

from passport_portal.celery import app
from passport_portal.scheduler import LeaderScheduler

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[str]:
    if connection.vendor != "postgresql":
        pytest.skip("the lock is PostgreSQL's")
    settings.PASSPORT_SCHEDULER_STANDBY_SECONDS = 0  # check the lock at every tick
    record: list[str] = []

    def tick(self: LeaderScheduler) -> float:  # what beat's own tick would send
        record.append(self.host)
        return 0.1

    monkeypatch.setattr(PersistentScheduler, "tick", tick)
    return record


@pytest.fixture
def hosts(tmp_path: Path, sent: list[str]) -> Iterator[tuple[LeaderScheduler, LeaderScheduler]]:
    made = []
    for host in ("a", "b"):
        scheduler = LeaderScheduler(app=app, schedule_filename=str(tmp_path / f"beat-{host}"))
        scheduler.host = host  # type: ignore[attr-defined]
        made.append(scheduler)
    try:
        yield made[0], made[1]
    finally:
        for scheduler in made:
            scheduler.close()


def _lose_host(scheduler: LeaderScheduler) -> None:
    """The host's database session ends without a word, as when the host is gone."""
    assert scheduler.leader_lock.conn is not None
    pid = scheduler.leader_lock.conn.info.backend_pid
    with connection.cursor() as cursor:
        # With a timeout (PostgreSQL 14+) it waits until the backend, and the lock with it, is gone.
        cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # Inside a transaction pg_stat_activity is a snapshot taken at first read: clear it each time.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.02)
    pytest.fail(f"backend {pid} outlived pg_terminate_backend")


def test_the_scheduler_setting_names_the_locked_scheduler() -> None:
    assert django_settings.CELERY_BEAT_SCHEDULER == "passport_portal.scheduler:LeaderScheduler"
    assert app.conf.beat_scheduler == "passport_portal.scheduler:LeaderScheduler"


def test_only_the_holder_of_the_lock_sends(hosts: tuple[LeaderScheduler, LeaderScheduler], sent: list[str]) -> None:
    a, b = hosts
    for _ in range(3):
        a.tick()
        assert b.tick() == float(django_settings.PASSPORT_SCHEDULER_STANDBY_SECONDS)
    assert sent == ["a", "a", "a"]


def test_the_standby_takes_over_when_the_active_host_is_lost(
    hosts: tuple[LeaderScheduler, LeaderScheduler], sent: list[str]
) -> None:
    a, b = hosts
    a.tick()
    b.tick()
    _lose_host(a)

    b.tick()
    a.tick()  # still running but cut off: it notices and stops sending
    a.tick()
    b.tick()

    assert sent == ["a", "b", "b"]
    assert b.is_leader and not a.is_leader


def test_a_stopped_scheduler_hands_the_lock_over(
    hosts: tuple[LeaderScheduler, LeaderScheduler], sent: list[str]
) -> None:
    a, b = hosts
    a.tick()
    a.close()  # systemctl stop: the session ends, the lock with it
    b.tick()
    assert sent == ["a", "b"]


def test_a_standby_whose_database_is_unreachable_sends_nothing_of_the_holders(
    hosts: tuple[LeaderScheduler, LeaderScheduler], sent: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b = hosts

    def refuse(self: object) -> None:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(type(b.leader_lock), "_connect", refuse)
    b.tick()
    assert sent == []


def _all_due(scheduler: LeaderScheduler) -> None:
    for entry in scheduler.schedule.values():
        entry.last_run_at = scheduler.app.now() - timedelta(hours=1)


def test_every_standby_still_sends_the_logbook_checkpoint(
    hosts: tuple[LeaderScheduler, LeaderScheduler], sent: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any database role may take the lock: were the checkpoint the holder's alone, whoever took it
    # could stop it, and entries written and removed meanwhile would leave no trace.
    a, b = hosts
    standby_sent: list[str] = []
    monkeypatch.setattr(Scheduler, "apply_async", lambda self, entry, **kwargs: standby_sent.append(entry.name))
    a.tick()
    _all_due(b)
    b.tick()
    b.tick()  # sent once per interval
    assert (sent, standby_sent) == (["a"], ["checkpoint-logbook"])  # the rest waits for the lock

    def refuse(self: object) -> None:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(type(b.leader_lock), "_connect", refuse)
    b.leader_lock.release()
    _all_due(b)
    b.tick()  # its database away, it still sends to the broker
    assert (sent, standby_sent) == (["a"], ["checkpoint-logbook", "checkpoint-logbook"])
