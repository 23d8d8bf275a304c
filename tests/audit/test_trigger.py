"""The database itself refuses to change or remove Logbook entries (PostgreSQL)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import LogbookEntry
from tests.audit.conftest import TABLE, append_many, on_postgresql

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgresql_only(db: None) -> None:
    if not on_postgresql():
        pytest.skip("The append-only trigger exists on PostgreSQL only.")


def test_update_is_refused() -> None:
    (entry,) = append_many(1)
    refused = "The Logbook is append-only: UPDATE on audit_logbookentry is refused"
    with pytest.raises(DatabaseError, match=refused), transaction.atomic():
        LogbookEntry.objects.filter(pk=entry.pk).update(action="request.rejected")
    entry.refresh_from_db()
    assert entry.action == "test.event"


def test_saving_a_loaded_entry_is_refused() -> None:
    (entry,) = append_many(1)
    entry.detail = {"n": 99}
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entry.save()


def test_delete_is_refused() -> None:
    entries = append_many(2)
    refused = "The Logbook is append-only: DELETE on audit_logbookentry is refused"
    with pytest.raises(DatabaseError, match=refused), transaction.atomic():
        LogbookEntry.objects.filter(pk=entries[0].pk).delete()
    assert LogbookEntry.objects.count() == 2


def test_truncate_is_refused() -> None:
    append_many(2)
    refused = "TRUNCATE on audit_logbookentry is refused"
    with pytest.raises(DatabaseError, match=refused), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE}")
    assert LogbookEntry.objects.count() == 2


def test_a_session_may_empty_a_scratch_database_only_when_it_asks_by_name() -> None:
    append_many(2)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL passport.logbook_truncate = 'allow'")
            # The permission covers emptying the table, never removing chosen rows.
            with pytest.raises(DatabaseError, match="DELETE"), transaction.atomic():
                LogbookEntry.objects.filter(pk=LogbookEntry.objects.first().pk).delete()  # type: ignore[union-attr]
            cursor.execute(f"TRUNCATE {TABLE}")
        assert LogbookEntry.objects.count() == 0
        transaction.set_rollback(True)
    assert LogbookEntry.objects.count() == 2
    with pytest.raises(DatabaseError, match="TRUNCATE"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE}")


def test_the_message_tells_how_to_record_a_correction() -> None:
    (entry,) = append_many(1)
    with pytest.raises(DatabaseError) as refused, transaction.atomic():
        LogbookEntry.objects.filter(pk=entry.pk).delete()
    assert "record a correction as a new entry" in str(refused.value.__cause__.diag.message_hint)


def test_appending_still_works() -> None:
    append_many(3)
    assert LogbookEntry.objects.count() == 3
