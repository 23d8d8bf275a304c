"""Stretches of time with no checkpoint: a checkpoint every interval even while the head stands
still (a heartbeat), verify_logbook naming any gap in the bucket's signed times (exit 12), and
beat sending the checkpoint even while someone else holds its advisory lock.

The attacker here can write to PostgreSQL (any role may take any advisory lock) but holds
neither the Logbook's keys nor a way past the bucket's Object Lock."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import time_machine
from celery.beat import Scheduler
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from audit.anchor.checkpoints import logbook_checkpoint_write
from audit.models import LogbookCheckpoint, LogbookEntry, LogbookHead
from audit.services import logbook_append
from passport_portal.celery import app
from passport_portal.scheduler import LOCK_KEY, LeaderScheduler
from tests.audit.anchoring import verify_code
from tests.audit.conftest import append_many, raw_sql
from workers.tasks import checkpoint_logbook

pytestmark = pytest.mark.django_db


def _erase_after(checkpointed: LogbookCheckpoint, head: LogbookHead) -> None:
    """The insider's clean-up: the entries after ``checkpointed`` deleted, LogbookHead moved back
    and the id sequence put back, so not even a gap in the numbers is left."""
    raw_sql("DELETE FROM audit_logbookentry WHERE id > %s", [checkpointed.entry_id])
    LogbookHead.objects.filter(pk=1).update(
        last_hash=head.last_hash, last_entry_id=head.last_entry_id, last_created_at=head.last_created_at
    )
    raw_sql("SELECT setval(pg_get_serial_sequence('audit_logbookentry', 'id'), %s)", [checkpointed.entry_id])


def _hold_beat_lock() -> psycopg.Connection[Any]:
    """The insider's own session takes beat's advisory lock (any role may)."""
    db = connections["default"].settings_dict
    params = {"dbname": db["NAME"], "user": db.get("USER"), "password": db.get("PASSWORD"),
              "host": db.get("HOST"), "port": db.get("PORT")}  # fmt: skip
    conn = psycopg.connect(**{key: value for key, value in params.items() if value}, autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    return conn


@pytest.fixture
def postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("advisory locks and sequences are PostgreSQL's")


@pytest.mark.usefixtures("postgresql_only")
def test_an_hour_of_entries_written_and_erased_without_checkpoints_is_a_gap_exit_12(evidence: Any) -> None:
    # Checkpoints stop (beat silenced, workers stopped); an hour of entries is written, then
    # removed without a trace in the chain. The bucket's signed times show the hour nobody signed.
    append_many(3)
    anchored = logbook_checkpoint_write(reason="periodic")
    assert anchored is not None
    head = LogbookHead.objects.get(pk=1)
    start = timezone.now()
    for minute in range(0, 60, 5):
        with time_machine.travel(start + timedelta(minutes=minute), tick=False):
            logbook_append(action="terminal.ended", actor=None, detail={"minute": minute})
    _erase_after(anchored, head)
    with time_machine.travel(start + timedelta(hours=2), tick=True):
        resumed = append_many(2)
        assert resumed[0].pk == anchored.entry_id + 1
        resumed_checkpoint = logbook_checkpoint_write(reason="periodic")
        assert resumed_checkpoint is not None
        code, said = verify_code()
    assert not LogbookEntry.objects.filter(action="terminal.ended").exists()
    assert code == 12, said
    assert "[checkpoint-gap] No checkpoint was written between " in said
    assert "checkpoint-gap" in said.splitlines()[-1]


def test_checkpoints_that_stopped_are_a_gap_up_to_now(evidence: Any) -> None:
    append_many(2)
    written = logbook_checkpoint_write(reason="periodic")
    assert written is not None
    with time_machine.travel(timezone.now() + timedelta(hours=1), tick=True):
        code, said = verify_code()
    assert code == 12, said
    assert "[checkpoint-gap] No checkpoint was written since " in said


def test_a_fresh_install_is_no_gap(evidence: Any) -> None:
    # No entries, so nothing to checkpoint.
    assert checkpoint_logbook() is None
    code, said = verify_code()
    assert (code, "Logbook intact: 0 entries, 0 checkpoint(s)" in said) == (0, True), said
    # The first checkpoint; the first interval (and its grace) not over yet.
    append_many(1)
    assert checkpoint_logbook() is not None
    limit = settings.PASSPORT_LOGBOOK_CHECKPOINT_SECONDS + 60 * settings.PASSPORT_LOGBOOK_CHECKPOINT_GRACE_MINUTES
    with time_machine.travel(timezone.now() + timedelta(seconds=limit - 30), tick=False):
        code, said = verify_code()
    assert code == 0, said


def test_a_quiet_logbook_is_checkpointed_every_interval(evidence: Any) -> None:
    (entry,) = append_many(1)
    first = logbook_checkpoint_write(reason="periodic")
    assert first is not None
    interval = timedelta(seconds=settings.PASSPORT_LOGBOOK_CHECKPOINT_SECONDS)
    start = timezone.now()
    for step in range(1, 31):  # half an hour with no entry: beat sends the task every interval
        with time_machine.travel(start + step * interval, tick=False):
            assert checkpoint_logbook() == entry.pk
            assert checkpoint_logbook() is None  # another beat's send in the same interval: no duplicate
    heartbeats = LogbookCheckpoint.objects.exclude(pk=first.pk)
    assert heartbeats.count() == 30
    assert set(heartbeats.values_list("entry_id", "entry_hash", "reason")) == {(entry.pk, entry.hash, "heartbeat")}
    listed = evidence.list_object_versions(Bucket=settings.PASSPORT_EVIDENCE_BUCKET)["Versions"]
    assert len(listed) == 31
    with time_machine.travel(start + 30 * interval, tick=False):
        code, said = verify_code()
    assert code == 0, said
    assert "31 checkpoint(s)" in said


def _due(scheduler: LeaderScheduler, at: datetime) -> None:
    """Every entry of the schedule last ran an hour before ``at``: all are due."""
    for entry in scheduler.schedule.values():
        entry.last_run_at = at - timedelta(hours=1)


@pytest.mark.usefixtures("postgresql_only")
def test_beat_kept_from_its_lock_still_checkpoints_the_hour(
    evidence: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # The insider holds beat's lock so that nothing is sent; an hour of entries is written, then
    # removed. Beat still sends the checkpoint while it stands by: the bucket names the hour's entries.
    settings.PASSPORT_SCHEDULER_STANDBY_SECONDS = 0  # beat checks the lock at every tick
    sent: list[str] = []
    monkeypatch.setattr(Scheduler, "apply_async", lambda self, entry, **kwargs: sent.append(entry.task))
    append_many(3)
    anchored = logbook_checkpoint_write(reason="periodic")
    assert anchored is not None
    head = LogbookHead.objects.get(pk=1)
    thief = _hold_beat_lock()
    beat = LeaderScheduler(app=app, schedule_filename=str(tmp_path / "beat"))
    try:
        start = timezone.now()
        for minute in range(0, 60, 5):
            with time_machine.travel(start + timedelta(minutes=minute), tick=False):
                logbook_append(action="terminal.ended", actor=None, detail={"minute": minute})
                _due(beat, app.now())
                beat.tick()
                assert not beat.is_leader  # the insider holds the lock
                assert sent == ["workers.tasks.checkpoint_logbook"]  # and only the checkpoint goes
                for task in sent:
                    app.tasks[task]()  # a worker runs it
                sent.clear()
        _erase_after(anchored, head)
    finally:
        beat.close()
        thief.close()
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        code, said = verify_code()
    assert code == 7, said
    assert "[truncated] A checkpoint names entry #" in said


def test_a_gap_the_operator_acknowledged_is_said_but_does_not_fail(evidence: Any, settings: Any) -> None:
    # Planned maintenance: the workers were stopped for an hour. Without the acknowledgment every
    # later verification would fail on it; with it, the gap is still said.
    append_many(2)
    written = logbook_checkpoint_write(reason="periodic")
    assert written is not None
    start = timezone.now()
    with time_machine.travel(start + timedelta(hours=1), tick=True):
        assert logbook_checkpoint_write(reason="periodic") is not None
        assert verify_code()[0] == 12
        # The window must cover the second checkpoint's time: the travelled clock ticks on past
        # ``start`` + 1 h while the test runs (a few milliseconds on a loaded machine).
        settings.PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS = [
            (start - timedelta(minutes=1), start + timedelta(hours=1, minutes=1))
        ]
        code, said = verify_code()
    assert code == 0, said
    assert "acknowledged [checkpoint-gap] No checkpoint was written between " in said
    assert "Logbook intact" in said


def test_an_acknowledgment_covers_only_the_stretch_it_names(evidence: Any, settings: Any) -> None:
    append_many(2)
    assert logbook_checkpoint_write(reason="periodic") is not None
    start = timezone.now()
    # The window ends before the gap does: the gap fails verification as before.
    settings.PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS = [(start - timedelta(minutes=1), start + timedelta(minutes=30))]
    with time_machine.travel(start + timedelta(hours=1), tick=True):
        code, said = verify_code()
    assert code == 12, said
    assert "acknowledged" not in said


@pytest.mark.parametrize(
    "value",
    ["2026-12-05T10:00Z", "2026-12-05T10:00/2026-12-05T11:00", "2026-12-05T11:00Z/2026-12-05T10:00Z", "x/y"],
)
def test_a_malformed_acknowledgment_stops_the_start(value: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from passport_portal.env import time_windows_parse

    with pytest.raises(ImproperlyConfigured, match="PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS"):
        time_windows_parse("PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS", [value])
    assert time_windows_parse("X", ["2026-12-05T10:00Z/2026-12-05T11:00+00:00"])[0][1].hour == 11


def test_a_head_held_back_is_never_signed_so_the_erased_hour_is_a_gap(evidence: Any) -> None:
    # The insider puts the head row back at an old tip before each checkpoint, hoping the task
    # signs that old head as a heartbeat every minute: then no gap would show the hour they erase.
    from audit.anchor.storage import EvidenceStoreError

    append_many(3)
    anchored = logbook_checkpoint_write(reason="periodic")
    assert anchored is not None
    head = LogbookHead.objects.get(pk=1)
    start = timezone.now()
    for minute in range(1, 61):
        with time_machine.travel(start + timedelta(minutes=minute), tick=False):
            logbook_append(action="terminal.ended", actor=None, detail={"minute": minute})
            LogbookHead.objects.filter(pk=1).update(
                last_hash=head.last_hash, last_entry_id=head.last_entry_id, last_created_at=head.last_created_at
            )
            with pytest.raises(EvidenceStoreError, match="the chain goes on past it"):
                logbook_checkpoint_write(reason="periodic")
    _erase_after(anchored, head)
    with time_machine.travel(start + timedelta(minutes=61), tick=False):
        append_many(2)
        assert logbook_checkpoint_write(reason="periodic") is not None
        code, said = verify_code()
    assert not LogbookEntry.objects.filter(action="terminal.ended").exists()
    # Each refusal is in the bucket: the chain then went on past the entries now there (exit 7).
    assert code == 7, said
    assert "(a refused checkpoint saw it)" in said
    assert "[checkpoint-gap] No checkpoint was written between " in said
