"""Going back to an older release's migrations on a populated PostgreSQL database: each step either
puts back what the older schema holds or refuses with a message, never an IntegrityError halfway.

Each test leaves the database migrated to the latest state.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.exceptions import IrreversibleError
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from tests.migrations.helpers import migrate, migrate_to_latest


@pytest.fixture
def migrated_back_after(transactional_db: None) -> Iterator[None]:
    try:
        yield
    finally:
        migrate_to_latest()


def test_audit_0005_refuses_to_go_back_over_keyed_entries(migrated_back_after: None) -> None:
    """Reversing 0005 dropped key_id; applied again it labelled every keyed entry legacy-sha256, so
    every HMAC entry read as edited and the chain could never verify again."""
    from audit.models import LogbookEntry
    from audit.services import logbook_append

    for n in range(3):
        logbook_append(action="test.entry", actor=None, detail={"n": n})
    first = LogbookEntry.objects.order_by("id").first()
    assert first is not None

    with pytest.raises(IrreversibleError, match=rf"audit 0005 cannot be reversed: Logbook entries from #{first.pk} on"):
        migrate([("audit", "0004_refusal_tally_and_throttle_window")])

    applied = MigrationRecorder(connection).applied_migrations()
    assert ("audit", "0005_logbook_keys_and_checkpoints") in applied
    assert set(LogbookEntry.objects.values_list("key_id", flat=True)) == {"logbook-1"}
    migrate_to_latest()
    call_command("verify_logbook", "--chain-only", "--jobs", "1")  # still intact


def test_audit_0005_goes_back_over_legacy_entries_only(migrated_back_after: None) -> None:
    """Entries written before keyed hashes lose nothing: their key id is the column's default."""
    apps = migrate([("audit", "0004_refusal_tally_and_throttle_window")])
    apps.get_model("audit", "LogbookEntry").objects.create(
        created_at=timezone.now(), actor_label="x", action="old.entry", detail={}, prev_hash="0" * 64, hash="1" * 64
    )
    migrate([("audit", "0005_logbook_keys_and_checkpoints")])
    migrate([("audit", "0004_refusal_tally_and_throttle_window")])
