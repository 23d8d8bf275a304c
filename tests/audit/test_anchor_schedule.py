"""The anchoring on the scheduler and on the page: the minute's checkpoint, the checkpoint of an
export, the daily verification (its record, its Logbook entry, the site admins' mail)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from audit.anchor import verification
from audit.anchor.verdict import logged_verdict
from audit.integrity import ChainProblem
from audit.models import LogbookCheckpoint, LogbookEntry, LogbookVerification
from tests.audit.anchoring import verify_code
from tests.audit.conftest import INFINITE_TIME, append_many, make_unreadable, on_postgresql, raw_sql, signed_in
from tests.conftest import World
from tests.factories import make_user
from workers.tasks import checkpoint_logbook, verify_logbook

pytestmark = pytest.mark.django_db


def test_the_minute_task_checkpoints_a_moved_head_at_once(evidence: Any) -> None:
    # An unmoved head is signed again once the interval is half over (test_checkpoint_gaps).
    assert checkpoint_logbook() is None  # an empty Logbook has no head
    entries = append_many(2)
    assert checkpoint_logbook() == entries[-1].pk
    assert checkpoint_logbook() is None  # signed just now
    (newer,) = append_many(1)
    assert checkpoint_logbook() == newer.pk
    keys = [row.object_key for row in LogbookCheckpoint.objects.order_by("id")]
    listed = evidence.list_object_versions(Bucket=settings.PASSPORT_EVIDENCE_BUCKET)["Versions"]
    assert sorted(item["Key"] for item in listed) == sorted(keys)


def test_the_minute_task_does_nothing_without_a_bucket(db: None, settings: Any) -> None:
    settings.PASSPORT_EVIDENCE_BUCKET = ""
    append_many(1)
    assert checkpoint_logbook() is None
    assert not LogbookCheckpoint.objects.exists()


def test_an_export_writes_a_checkpoint_of_its_own_record(
    world: World, evidence: Any, django_capture_on_commit_callbacks: Any
) -> None:
    append_many(3)
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(world.auditor).get("/logbook/export.jsonl")
    assert response.status_code == 200
    checkpoint = LogbookCheckpoint.objects.get()
    exported = LogbookEntry.objects.get(action="logbook.exported")
    assert (checkpoint.reason, checkpoint.entry_id) == ("export", exported.pk)
    assert verify_code()[0] == 0


def test_an_export_goes_on_when_the_bucket_fails(
    world: World, evidence: Any, settings: Any, django_capture_on_commit_callbacks: Any, caplog: Any
) -> None:
    append_many(1)
    settings.PASSPORT_EVIDENCE_BUCKET = "no-such-evidence-bucket"
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(world.auditor).get("/logbook/export.csv")
    assert response.status_code == 200
    assert not LogbookCheckpoint.objects.exists()
    assert "the checkpoint of an export could not be written" in caplog.text


def test_the_daily_check_records_an_intact_logbook_quietly(evidence: Any, mailoutbox: list[Any]) -> None:
    append_many(2)
    checkpoint_logbook()
    assert verify_logbook() is True
    record = LogbookVerification.objects.get()
    assert (record.intact, record.exit_code) == (True, 0)
    assert not LogbookEntry.objects.filter(action="logbook.verification_failed").exists()
    assert mailoutbox == []


def test_the_daily_check_alerts_on_a_break(world: World, evidence: Any, mailoutbox: list[Any]) -> None:
    site_admin = make_user("root", is_superuser=True, is_staff=True)
    make_user("quiet-admin", is_superuser=True, email_notifications=False)
    entries = append_many(3)
    checkpoint_logbook()
    raw_sql("UPDATE audit_logbookentry SET action = 'nothing.happened' WHERE id = %s", [entries[1].pk])

    assert verify_logbook() is False
    record = LogbookVerification.objects.get()
    assert (record.intact, record.exit_code, record.kinds) == (False, 3, ["edited"])
    alert = LogbookEntry.objects.get(action="logbook.verification_failed")
    assert alert.detail["exit_code"] == 3 and alert.detail["kinds"] == ["edited"]
    assert f"Entry #{entries[1].pk} was edited" in alert.detail["summary"]
    (mail,) = mailoutbox
    assert mail.to == [site_admin.email]
    assert "exit 3: edited" in mail.subject
    assert f"Entry #{entries[1].pk} was edited" in mail.body


def test_the_page_shows_the_last_checkpoint_and_verification(world: World, evidence: Any) -> None:
    client = signed_in(world.auditor)
    page = client.get("/logbook/").content.decode()
    assert "Last checkpoint, as recorded locally (unsigned):\n    none yet." in page
    assert "Last verification:\n    never." in page

    entries = append_many(2)
    checkpoint_logbook()
    verify_code()
    page = client.get("/logbook/").content.decode()
    # The checkpoint line comes from the portal's own table, which nothing signs: it says so.
    assert f"Last checkpoint, as recorded locally (unsigned):\n    entry #{entries[-1].pk}, written" in page
    verified = LogbookEntry.objects.get(action="logbook.verified")
    assert f"Last verification (Logbook entry #{verified.pk}):" in page
    assert '<span class="logbook-verified">intact</span> (2 entries, 1 checkpoints)' in page

    raw_sql("UPDATE audit_logbookentry SET action = 'nothing.happened' WHERE id = %s", [entries[0].pk])
    verify_code()
    page = client.get("/logbook/").content.decode()
    assert "NOT intact</strong> (exit 3: edited)" in page


def test_the_page_banner_does_not_trust_a_forged_verification_row(world: World, evidence: Any) -> None:
    """LogbookVerification rows are signed by nothing: one INSERT of an intact row by an insider
    with the database must not turn a broken Logbook's banner into "intact"."""
    entries = append_many(3)
    checkpoint_logbook()
    raw_sql("UPDATE audit_logbookentry SET action = 'nothing.happened' WHERE id = %s", [entries[0].pk])
    code, _ = verify_code()
    assert code == 3  # the real run finds the Logbook NOT intact
    now = timezone.now()
    forged = LogbookVerification.objects.create(  # the insider's INSERT
        started_at=now, finished_at=now + timedelta(seconds=1), intact=True, entries=3, checkpoints=1,
        exit_code=0, kinds=[], summary="",
    )  # fmt: skip
    page = signed_in(world.auditor).get("/logbook/").content.decode()
    assert "NOT intact</strong> (exit 3: edited)" in page, "the broken Logbook reads as intact"
    assert "logbook-verified" not in page
    assert f"Run #{forged.pk}, as recorded locally (unsigned), says intact but is not in the Logbook" in page


def test_the_page_banner_does_not_trust_a_forged_verification_entry(world: World, evidence: Any) -> None:
    """Nor a verification entry inserted without the Logbook key: its hash does not hold."""
    entries = append_many(3)
    checkpoint_logbook()
    raw_sql("UPDATE audit_logbookentry SET action = 'nothing.happened' WHERE id = %s", [entries[0].pk])
    assert verify_code()[0] == 3
    raw_sql(
        "INSERT INTO audit_logbookentry (created_at, actor_label, action, account_id, instance_ids, detail, "
        "prev_hash, hash, key_id) VALUES (%s, 'system', 'logbook.verified', '', '', %s, %s, %s, %s)",
        [timezone.now(), '{"exit_code": 0, "entries": 4, "checkpoints": 1, "kinds": []}', "f" * 64, "e" * 64,
         settings.PASSPORT_LOGBOOK_KEY_ID],
    )  # fmt: skip
    forged = LogbookEntry.objects.get(action="logbook.verified")
    page = signed_in(world.auditor).get("/logbook/").content.decode()
    assert "logbook-verified" not in page
    assert f"Logbook entry #{forged.pk} does not match its hash" in page


def test_the_page_says_when_checkpoints_are_off(world: World, settings: Any) -> None:
    settings.PASSPORT_EVIDENCE_BUCKET = ""
    page = signed_in(world.auditor).get("/logbook/").content.decode()
    assert "Checkpoints are off: no evidence bucket is configured." in page


def test_the_daily_check_still_names_an_edit_beside_a_malformed_row(world: World, mailoutbox: list[Any]) -> None:
    """One row Python cannot read (here a time of 'infinity') hides nothing: the edit beside it is
    named, the page's verdict turns, the site admins are told."""
    if not on_postgresql():
        pytest.skip("PostgreSQL holds these values.")
    site_admin = make_user("root", is_superuser=True, is_staff=True)
    entries = append_many(4)
    assert verify_logbook() is True  # an honest 'intact' verdict first
    raw_sql("UPDATE audit_logbookentry SET action = 'request.rejected' WHERE id = %s", [entries[1].pk])
    make_unreadable(entries[2], INFINITE_TIME)

    assert verify_logbook() is False
    record = LogbookVerification.objects.latest("id")
    assert (record.intact, record.exit_code, record.kinds) == (False, 3, ["edited"])
    assert f"Entry #{entries[1].pk} was edited" in record.summary
    assert f"Entry #{entries[2].pk} was edited" in record.summary
    verdict = logged_verdict()
    assert verdict is not None and not verdict.intact
    (mail,) = mailoutbox
    assert mail.to == [site_admin.email] and "exit 3: edited" in mail.subject


def test_a_check_that_fails_outright_is_a_failed_verification(
    world: World, mailoutbox: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the run itself raises, the daily task records it as not checked (exit 1), writes
    logbook.verification_failed for the page and tells the site admins: never the last 'intact'."""
    site_admin = make_user("root", is_superuser=True, is_staff=True)
    append_many(2)
    assert verify_logbook() is True

    def breaks() -> list[ChainProblem]:
        raise RuntimeError("a reader met something it did not expect")

    # An evidence pass as an app registers one (evidence_check_register), failing unlike any expected way.
    monkeypatch.setitem(verification._checks, "breaking", verification.EvidenceCheck("breaking", breaks))
    assert verify_logbook() is False
    record = LogbookVerification.objects.latest("id")
    assert (record.intact, record.exit_code, record.kinds) == (False, 1, ["uncheckable"])
    assert "the check itself failed (RuntimeError: a reader met something it did not expect)" in record.summary
    failed = LogbookEntry.objects.get(action="logbook.verification_failed")
    assert failed.detail["exit_code"] == 1 and failed.detail["verification_id"] == record.pk
    verdict = logged_verdict()
    assert verdict is not None and not verdict.intact
    (mail,) = mailoutbox
    assert mail.to == [site_admin.email] and "exit 1: uncheckable" in mail.subject
