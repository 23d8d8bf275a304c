"""logbook_append: each entry is hashed over its content and linked to the one before."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from audit.models import LogbookEntry, LogbookHead
from audit.services import GENESIS_HASH, canonical_time, entry_digest, logbook_append
from tests.conftest import World

pytestmark = pytest.mark.django_db


def recomputed(entry: LogbookEntry) -> str:
    return entry_digest(
        key_id=entry.key_id,
        prev_hash=entry.prev_hash,
        created_at=canonical_time(entry.created_at),
        actor_id=entry.actor_id,
        actor_label=entry.actor_label,
        action=entry.action,
        account_id=entry.account_id,
        request_id=entry.request_id,
        instance_ids=entry.instance_ids,
        detail=entry.detail,
    )


def test_entries_link_into_one_chain_from_genesis(world: World) -> None:
    first = logbook_append(action="request.created", actor=world.requester, account=world.prod, request_id=7)
    second = logbook_append(action="request.approved", actor=world.approver, account="111111111111", request_id=7)
    third = logbook_append(action="grant.ready", actor=None, instance_ids=[world.web.instance_id])

    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert len({first.hash, second.hash, third.hash}) == 3
    head = LogbookHead.objects.get(pk=1)
    assert (head.last_hash, head.last_entry_id) == (third.hash, third.pk)


def test_the_hash_read_back_from_the_database_matches_the_content(world: World) -> None:
    logbook_append(
        action="request.created",
        actor=world.requester,
        account=world.prod,
        request_id=42,
        instance_ids=[world.web.instance_id, world.db.instance_id],
        detail={"reason": "Disk full on web-1 ✓", "minutes": 60, "nested": {"b": [1, 2], "a": None}},
    )
    entry = LogbookEntry.objects.get()
    assert recomputed(entry) == entry.hash


def test_subjects_are_stored_as_plain_values(world: World) -> None:
    entry = logbook_append(
        action="grant.provisioning",
        actor=world.requester,
        account=world.prod,
        instance_ids=[world.web.instance_id, " ", world.db.instance_id],
    )
    entry.refresh_from_db()
    assert entry.account_id == "111111111111"
    assert entry.actor_label == "alice"
    assert entry.instance_ids == f" {world.web.instance_id} {world.db.instance_id} "
    assert entry.instance_id_list == [world.web.instance_id, world.db.instance_id]


def test_a_worker_is_recorded_as_system(db: None) -> None:
    entry = logbook_append(action="request.expiring", actor=None)
    assert (entry.actor_id, entry.actor_label, entry.instance_ids) == (None, "system", "")


def test_the_logbook_clock_never_runs_backwards(db: None) -> None:
    with time_machine.travel(datetime(2026, 3, 2, 12, tzinfo=UTC), tick=False):
        later = logbook_append(action="clock.ahead", actor=None)
    # Another host whose clock lags a little appends next.
    with time_machine.travel(datetime(2026, 3, 2, 11, 59, 59, tzinfo=UTC), tick=False):
        lagging = logbook_append(action="clock.behind", actor=None)
    lagging.refresh_from_db()
    assert lagging.created_at == later.created_at
    assert recomputed(lagging) == lagging.hash
    assert LogbookHead.objects.get().last_created_at == later.created_at
