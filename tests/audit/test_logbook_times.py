"""Entry times against an insider with the database but not the Logbook key: the head row's time
(``LogbookHead.last_created_at``, which nothing signs) cannot date entries into the future, and
verify_logbook names entries whose times run backwards or come after the checkpoint that signed them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from audit.anchor.checkpoints import logbook_checkpoint_write
from audit.anchor.verification import logbook_full_verify
from audit.forms import LogbookFilterForm
from audit.models import LogbookEntry, LogbookHead
from audit.selectors import logbook_list
from audit.services import canonical_time, logbook_append
from tests.audit.anchoring import verify_code
from tests.audit.conftest import append_many, on_postgresql
from tests.conftest import World

pytestmark = pytest.mark.django_db


def _hour_around(moment: Any) -> LogbookFilterForm:
    form = LogbookFilterForm(
        {
            "since": (moment - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"),
            "until": (moment + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    assert form.is_valid(), form.errors
    return form


def test_a_head_moved_forward_dates_no_entry_and_is_named(evidence: Any, world: World) -> None:
    append_many(3)
    logbook_checkpoint_write(reason="periodic")
    real = timezone.now()
    forged = real + timedelta(hours=6)
    LogbookHead.objects.filter(pk=1).update(last_created_at=forged)  # the insider's UPDATE
    hidden = logbook_append(action="terminal.started", actor=None, detail={"what": "the insider's session"})
    assert hidden.created_at < real + timedelta(minutes=2)  # dated by the clock, not by the head row
    # The head's time was refused, and that is on the record, hashed, just before the entry.
    refused = LogbookEntry.objects.get(action="logbook.head_time_refused")
    assert refused.pk == hidden.pk - 1
    assert refused.detail["head_at"] == canonical_time(forged)
    assert refused.detail["head_entry_id"] == hidden.pk - 2
    LogbookHead.objects.filter(pk=1).update(last_created_at=timezone.now())  # the clock put back
    later = logbook_append(action="test.after", actor=None)
    assert later.created_at >= hidden.created_at  # times still rise with the ids
    logbook_checkpoint_write(reason="periodic")
    # An auditor asking for the hour around when it happened gets it.
    shown = list(logbook_list(user=world.auditor, filters=_hour_around(real).to_filters()).values_list("id", flat=True))
    assert hidden.pk in shown and later.pk in shown
    code, said = verify_code()
    assert code == 10, said
    assert f"[head] At entry #{refused.pk} the recorded tip's time (LogbookHead) was {canonical_time(forged)}" in said


def test_a_head_time_that_is_not_the_tips_is_named(evidence: Any) -> None:
    entries = append_many(2)
    logbook_checkpoint_write(reason="periodic")
    assert verify_code()[0] == 0
    logbook_checkpoint_write(reason="periodic")  # the verification's own entry
    LogbookHead.objects.filter(pk=1).update(last_created_at=timezone.now() + timedelta(hours=6))
    tip = LogbookEntry.objects.order_by("-id").first()
    assert tip is not None and tip.pk >= entries[-1].pk
    code, said = verify_code()
    assert code == 10, said
    assert f"[head] LogbookHead dates the tip #{tip.pk} " in said


def test_an_entry_dated_after_its_checkpoint_is_misdated(evidence: Any) -> None:
    append_many(2)
    # A host whose clock runs six hours ahead (or an append under a forged head before this was refused).
    with time_machine.travel(timezone.now() + timedelta(hours=6), tick=False):
        (ahead,) = append_many(1)
    checkpoint = logbook_checkpoint_write(reason="periodic")  # signed now, by a clock that is right
    assert checkpoint is not None and checkpoint.entry_id == ahead.pk
    code, said = verify_code()
    assert code == 13, said
    assert f"[misdated] Entry #{ahead.pk} is dated {canonical_time(ahead.created_at)}" in said
    assert f"after the checkpoint written at {canonical_time(checkpoint.written_at)} signed it" in said


def test_times_running_backwards_are_misdated_without_a_bucket(db: None, settings: Any) -> None:
    settings.PASSPORT_EVIDENCE_BUCKET = ""
    start = timezone.now()
    append_many(2)
    with time_machine.travel(start + timedelta(hours=6), tick=False):
        (ahead,) = append_many(1)
    LogbookHead.objects.filter(pk=1).update(last_created_at=None)  # the insider clears the head's time
    with time_machine.travel(start, tick=False):
        (behind,) = append_many(1)  # dated by the clock: six hours before the entry before it
    assert behind.created_at < ahead.created_at
    code, said = verify_code()
    assert code == 13, said
    assert f"[misdated] Entry #{behind.pk} is dated 6:00:00" in said and f"before entry #{ahead.pk}" in said
    # Not yet covered by any checkpoint: the run's own clock stands in for one.
    assert f"[misdated] Entry #{ahead.pk} is dated {canonical_time(ahead.created_at)}" in said


def test_a_clock_a_little_behind_is_not_misdated(evidence: Any) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        append_many(2)
    with time_machine.travel(start - timedelta(seconds=30), tick=False):  # another host, 30 s behind
        append_many(2)
        logbook_checkpoint_write(reason="periodic")
    assert not LogbookEntry.objects.filter(action="logbook.head_time_refused").exists()
    code, said = verify_code()
    assert code == 0, said


# -- several processes: ranges taken whole say what the entry-by-entry walk says


@pytest.fixture
def committed(transactional_db: None) -> Iterator[None]:
    yield
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")


def _said(jobs: int) -> list[tuple[str, list[int], str]]:
    verification = logbook_full_verify(jobs=jobs)
    assert not verification.error, verification.error
    return [(problem.kind, problem.entry_ids, problem.message) for problem in verification.report.problems]


@pytest.mark.django_db(transaction=True)
def test_ranges_taken_whole_find_the_misdated_entries(committed: None, evidence: Any) -> None:
    if not on_postgresql():
        pytest.skip("Several processes read PostgreSQL's snapshot.")
    # 120 entries in 12 ranges of 10: #25-#39 (across two ranges) dated six hours ahead, then #40,
    # which starts a range, dated by the clock again (the head's time cleared first).
    start = timezone.now()
    entries = append_many(25)
    with time_machine.travel(start + timedelta(hours=6), tick=False):
        entries += append_many(15)
    LogbookHead.objects.filter(pk=1).update(last_created_at=None)
    entries += append_many(80)
    assert [entry.pk - entries[0].pk for entry in entries] == list(range(120))
    logbook_checkpoint_write(reason="periodic")
    one, many = _said(1), _said(3)
    assert one == many
    kinds = [(kind, ids) for kind, ids, _ in many]
    assert sorted(kinds) == [
        ("misdated", [entries[25].pk, entries[39].pk]),
        ("misdated", [entries[39].pk, entries[40].pk]),
    ]


def test_a_clock_stepped_back_once_can_be_acknowledged(evidence: Any, settings: Any) -> None:
    # One host's clock steps back two minutes (an NTP correction after a VM resumes): the refused
    # head time is a finding, which an operator who knows the event
    # acknowledges (PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS) instead of every later run failing.
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        append_many(3)
        assert logbook_checkpoint_write(reason="periodic") is not None
    with time_machine.travel(start - timedelta(minutes=2), tick=False):
        logbook_append(action="test.after_step", actor=None)
    assert LogbookEntry.objects.filter(action="logbook.head_time_refused").exists()
    with time_machine.travel(start + timedelta(seconds=20), tick=False):
        append_many(1)
        assert logbook_checkpoint_write(reason="periodic") is not None
    with time_machine.travel(start + timedelta(seconds=25), tick=False):
        assert verify_code()[0] != 0
        settings.PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS = [(start - timedelta(hours=1), start + timedelta(hours=1))]
        code, said = verify_code()
    assert code == 0, said
    assert "acknowledged [head] At entry #" in said and "Logbook intact" in said
