"""Checkpoints the task refuses to write leave a signed refusal in the bucket (audit.anchor.refusals).

The insider here has only the database (no Logbook key, no signing key, no way past Object Lock).
With one stray row past the head they stop the checkpoints, let ~5 minutes of entries be written,
then erase them inside the interval plus the grace (no gap): the refusals name the entries that
were there, so verify_logbook finds the chain truncated (exit 7) and names each refusal (head)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.anchor.checkpoints import logbook_checkpoint_write
from audit.anchor.storage import EvidenceStoreError
from audit.models import LogbookEntry, LogbookHead
from audit.services import logbook_append
from tests.audit.anchoring import verify_code
from tests.audit.conftest import append_many, raw_sql
from workers.tasks import checkpoint_logbook

pytestmark = pytest.mark.django_db


def test_stray_row_past_head_suppresses_checkpoints_and_tail_erasure_goes_unseen(evidence: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL")
    append_many(3)
    anchored = logbook_checkpoint_write(reason="periodic")
    assert anchored is not None
    head = LogbookHead.objects.get(pk=1)
    start = timezone.now()
    # The insider's one INSERT: a junk row far past the head (no key needed, it never has to verify).
    raw_sql(
        "INSERT INTO audit_logbookentry (id, created_at, actor_label, action, account_id, instance_ids, detail, "
        "prev_hash, hash, key_id) VALUES (%s, now(), 'x', 'x', '', '', '{}', 'x', 'junk', 'x')",
        [anchored.entry_id + 10_000_000],
    )
    # Five minutes of real activity; every minute the checkpoint task refuses to sign.
    for minute in range(1, 6):
        with time_machine.travel(start + timedelta(minutes=minute), tick=False):
            logbook_append(action="request.approved", actor=None, request_id=minute, detail={"minute": minute})
            with pytest.raises(EvidenceStoreError, match="the chain goes on past it"):
                checkpoint_logbook()
    with time_machine.travel(start + timedelta(minutes=5, seconds=30), tick=False):
        raw_sql("DELETE FROM audit_logbookentry WHERE id > %s", [anchored.entry_id])
        LogbookHead.objects.filter(pk=1).update(
            last_hash=head.last_hash, last_entry_id=head.last_entry_id, last_created_at=head.last_created_at
        )
        raw_sql("SELECT setval(pg_get_serial_sequence('audit_logbookentry', 'id'), %s)", [anchored.entry_id])
    with time_machine.travel(start + timedelta(minutes=5, seconds=50), tick=False):
        assert checkpoint_logbook() == anchored.entry_id  # a heartbeat of the old head
        append_many(2)
        assert checkpoint_logbook() is not None
    with time_machine.travel(start + timedelta(minutes=6, seconds=20), tick=False):
        code, said = verify_code()
    assert not LogbookEntry.objects.filter(action="request.approved").exists()  # 5 minutes of approvals gone
    assert code == 7, f"verify_logbook after 5 minutes of entries were erased: {said}"
    assert f"the chain went on to entry #{anchored.entry_id + 10_000_000} (a refused checkpoint saw it)" in said
    assert f"names #{anchored.entry_id}: the entries after #{anchored.entry_id} that were there were removed" in said
    assert said.count("[head] At ") == 5  # each refusal, for good
    assert "checkpoint-gap" not in said  # inside the interval plus the grace: only the refusals tell


def _refusals(evidence: Any) -> list[str]:
    listed = evidence.list_object_versions(Bucket=settings.PASSPORT_EVIDENCE_BUCKET).get("Versions", [])
    return [version["Key"] for version in listed if "refused-" in version["Key"]]


def test_a_head_not_the_tip_is_refused_on_record_and_stays_a_finding(evidence: Any) -> None:
    append_many(3)
    assert logbook_checkpoint_write(reason="periodic") is not None
    head = LogbookHead.objects.get(pk=1)
    LogbookHead.objects.filter(pk=1).update(last_hash="0" * 64)  # the head row disagrees with its entry
    with pytest.raises(EvidenceStoreError, match="which is not the chain's tip"):
        checkpoint_logbook()
    assert len(_refusals(evidence)) == 1
    LogbookHead.objects.filter(pk=1).update(last_hash=head.last_hash)  # put back: nothing was erased
    append_many(1)
    assert checkpoint_logbook() is not None
    code, said = verify_code()
    assert code == 10, said  # the refusal says the head once disagreed; no entry is gone
    assert f"LogbookHead named #{head.last_entry_id}" in said
    assert "truncated" not in said


def test_a_sound_logbook_is_never_refused(evidence: Any) -> None:
    for _ in range(5):
        append_many(2)
        assert checkpoint_logbook() is not None
    assert _refusals(evidence) == []
    assert verify_code()[0] == 0
