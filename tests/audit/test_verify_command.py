"""manage.py verify_logbook: an intact chain passes; an edit, an insertion or a removal is named."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import LogbookHead
from audit.services import EntryHasher, canonical_time
from tests.audit.conftest import UNREADABLE, append_many, make_unreadable, on_postgresql, raw_sql, skip_an_id

pytestmark = pytest.mark.django_db
KEY_ID = "logbook-1"  # the test settings' Logbook key, which this attacker holds


def verify(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("verify_logbook", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def verify_fails() -> str:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="Logbook NOT intact") as failure:
        call_command("verify_logbook", stdout=out, stderr=err)
    return err.getvalue() + str(failure.value)


def forge(*, entry_id: int, prev_hash: str, action: str = "request.approved") -> None:
    """Insert an entry that hashes correctly, as someone who knows the scheme and holds the key could
    (dated now, so that its time alone does not give it away: audit.anchor.entry_times)."""
    created_at = canonical_time(timezone.now())
    digest = EntryHasher().digest(
        key_id=KEY_ID,
        prev_hash=prev_hash,
        created_at=created_at,
        actor_id=None,
        actor_label="mallory",
        action=action,
        account_id="",
        request_id=None,
        instance_ids="",
        detail={},
    )
    raw_sql(
        "INSERT INTO audit_logbookentry"
        " (id, created_at, actor_label, action, account_id, instance_ids, detail, prev_hash, hash, key_id)"
        " VALUES (%s, %s, 'mallory', %s, '', '', '{}', %s, %s, %s)",
        [entry_id, created_at, action, prev_hash, digest, KEY_ID],
    )


def test_an_intact_chain_passes() -> None:
    append_many(7)
    out, err = verify()
    assert "Logbook intact: 7 entries" in out
    assert err == ""


def test_an_empty_logbook_is_intact(db: None) -> None:
    out, _ = verify()
    assert "Logbook intact: 0 entries" in out


def test_small_batches_walk_the_same_chain() -> None:
    append_many(11)
    out, _ = verify("--batch-size", "3")
    assert "Logbook intact: 11 entries" in out


def test_an_edited_entry_is_named() -> None:
    entries = append_many(5)
    raw_sql("UPDATE audit_logbookentry SET action = 'request.rejected' WHERE id = %s", [entries[2].pk])
    report = verify_fails()
    assert f"[edited] Entry #{entries[2].pk} was edited" in report
    assert "1 problem(s)" in report


def test_an_edited_detail_is_named() -> None:
    entries = append_many(3, detail={"reason": "deploy"})
    raw_sql(
        "UPDATE audit_logbookentry SET detail = %s WHERE id = %s",
        ['{"n": 1, "reason": "nothing to see"}', entries[1].pk],
    )
    assert f"Entry #{entries[1].pk} was edited" in verify_fails()


def test_an_entry_inserted_in_the_middle_is_named() -> None:
    _first, second = append_many(2)
    skip_an_id()
    (third,) = append_many(1)
    forged_id = second.pk + 1
    assert third.pk == forged_id + 1
    forge(entry_id=forged_id, prev_hash=second.hash)

    report = verify_fails()
    assert f"[inserted] Entries #{forged_id} were inserted: #{third.pk} follows #{second.pk}" in report
    assert "1 problem(s)" in report


def test_an_inserted_entry_with_a_made_up_link_is_named_as_inserted() -> None:
    _first, second = append_many(2)
    skip_an_id()
    append_many(1)
    forge(entry_id=second.pk + 1, prev_hash="f" * 64)

    report = verify_fails()
    assert f"Entries #{second.pk + 1} were inserted" in report
    assert "[removed]" not in report


def test_an_entry_added_after_the_tip_is_named() -> None:
    entries = append_many(3)
    forge(entry_id=entries[-1].pk + 10, prev_hash=entries[-1].hash)

    report = verify_fails()
    assert f"Entries #{entries[-1].pk + 10} were added after the recorded tip #{entries[-1].pk}" in report


def test_an_entry_removed_from_the_middle_is_named() -> None:
    entries = append_many(5)
    raw_sql("DELETE FROM audit_logbookentry WHERE id = %s", [entries[2].pk])

    report = verify_fails()
    assert f"[removed] The chain is broken before entry #{entries[3].pk}" in report
    assert f"after #{entries[1].pk} was removed" in report


def test_the_first_entry_removed_is_named() -> None:
    entries = append_many(3)
    raw_sql("DELETE FROM audit_logbookentry WHERE id = %s", [entries[0].pk])
    report = verify_fails()
    assert f"broken before entry #{entries[1].pk}" in report
    assert "first entries of the chain were removed" in report


def test_entries_removed_from_the_end_are_named() -> None:
    entries = append_many(4)
    raw_sql("DELETE FROM audit_logbookentry WHERE id >= %s", [entries[2].pk])

    report = verify_fails()
    assert f"[truncated] The recorded tip #{entries[3].pk} (LogbookHead) is gone" in report
    assert f"the last entry left is #{entries[1].pk}" in report


def test_an_entry_rewritten_with_a_fresh_hash_breaks_the_next_link() -> None:
    entries = append_many(3)
    victim = entries[1]
    digest = EntryHasher().digest(
        key_id=victim.key_id,
        prev_hash=victim.prev_hash,
        created_at="2026-01-01T00:00:00+00:00",
        actor_id=None,
        actor_label="system",
        action="nothing.happened",
        account_id="",
        request_id=None,
        instance_ids="",
        detail={},
    )
    raw_sql(
        "UPDATE audit_logbookentry SET action = 'nothing.happened', created_at = %s, detail = '{}', hash = %s"
        " WHERE id = %s",
        ["2026-01-01T00:00:00+00:00", digest, victim.pk],
    )

    report = verify_fails()
    assert f"broken before entry #{entries[2].pk}" in report
    assert f"or #{victim.pk} was rewritten with a new hash" in report


def test_a_missing_head_is_reported() -> None:
    append_many(2)
    LogbookHead.objects.all().delete()
    assert "LogbookHead is missing" in verify_fails()


@pytest.mark.parametrize("change", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_a_value_python_cannot_read_is_named_as_edited_and_the_walk_goes_on(db: None, change: str) -> None:
    """A row only a database writer can leave (json.loads refuses its detail, psycopg its time) is
    an edit like any other: named, with the exit code of one, and the entries after it still checked."""
    if not on_postgresql():
        pytest.skip("PostgreSQL holds these values; SQLite is a development database.")
    entries = append_many(5)
    make_unreadable(entries[1], change)
    raw_sql("UPDATE audit_logbookentry SET action = 'request.rejected' WHERE id = %s", [entries[3].pk])
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="Logbook NOT intact") as failure:
        call_command("verify_logbook", "--jobs", "1", stdout=out, stderr=err)
    assert failure.value.returncode == 3  # edited; not 1, "could not check"
    report = err.getvalue()
    assert f"[edited] Entry #{entries[1].pk} was edited" in report
    assert f"[edited] Entry #{entries[3].pk} was edited" in report  # the walk went on past it
    assert "2 problem(s) found in 5 entries" in str(failure.value)
