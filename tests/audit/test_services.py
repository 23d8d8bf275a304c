"""logbook_append: each entry is hashed over its content and linked to the one before."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction

from accounts.models import Membership
from audit.models import LogbookEntry, LogbookHead
from audit.services import GENESIS_HASH, EntryHasher, canonical_time, logbook_append, logbook_batch
from tests.conftest import World

pytestmark = pytest.mark.django_db


def recomputed(entry: LogbookEntry) -> str:
    return EntryHasher().digest(
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


def _reference_digest(key: bytes | None, fields: dict[str, object]) -> str:
    """The entry hash as specified: canonical JSON (sorted keys, no spaces, ASCII) of every field,
    HMAC-SHA256 under the key, or plain SHA-256 for legacy entries."""
    import hashlib
    import hmac
    import json

    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()
    if key is None:
        return hashlib.sha256(canonical).hexdigest()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("label", "detail"),
    [
        ("system", {}),
        ('al"ice\n$(reboot)', {"reason": "é\x1b[31m\u2028", "request": 5, "nested": {"b": [1, 2.5], "a": None}}),
        ("bob", {"prev": "x", "at": "y", "key": "z", "\ud83d\ude00": "emoji key"}),
    ],
)
def test_the_digest_is_the_specified_canonical_hmac_with_the_key_prepared_once(
    settings: object, label: str, detail: dict[str, object]
) -> None:
    from audit.services import LEGACY_KEY_ID

    fields = {
        "prev": "a" * 64,
        "at": "2026-12-03T16:11:03.123456+00:00",
        "actor_id": 7,
        "actor": label,
        "action": "request.created",
        "account": "111111111111",
        "request": 42,
        "instances": " i-1 i-2 ",
        "detail": detail,
    }
    arguments = (
        "a" * 64, "2026-12-03T16:11:03.123456+00:00", 7, label, "request.created", "111111111111", 42, " i-1 i-2 ",
        detail,
    )  # fmt: skip
    key = settings.PASSPORT_LOGBOOK_KEYS[settings.PASSPORT_LOGBOOK_KEY_ID].encode()  # type: ignore[attr-defined]
    key_id = settings.PASSPORT_LOGBOOK_KEY_ID  # type: ignore[attr-defined]
    hasher = EntryHasher()
    expected = _reference_digest(key, {**fields, "key": key_id})
    assert hasher.digest(key_id, *arguments) == expected
    assert hasher.digest(key_id, *arguments) == expected  # the prepared key is copied, never consumed
    assert hasher.digest(LEGACY_KEY_ID, *arguments) == _reference_digest(None, fields)


def test_an_appended_entry_is_what_the_table_holds_and_the_head_points_at_it(world: World) -> None:
    first = logbook_append(action="request.created", actor=world.requester, request_id=1, detail={"x": "ü"})
    second = logbook_append(
        action="grant.ready", actor=None, account="111111111111", instance_ids=["i-1 ", " i-2"], detail={"n": 1}
    )
    stored = LogbookEntry.objects.get(pk=second.pk)
    for field in ("created_at", "actor_id", "actor_label", "action", "account_id", "request_id", "instance_ids"):
        assert getattr(stored, field) == getattr(second, field), field
    assert (stored.detail, stored.prev_hash, stored.hash, stored.key_id) == (
        second.detail,
        first.hash,
        second.hash,
        second.key_id,
    )
    assert stored.instance_ids == " i-1 i-2 "
    head = LogbookHead.objects.get(pk=1)
    assert (head.last_hash, head.last_entry_id, head.last_created_at) == (second.hash, second.pk, second.created_at)


def test_a_batch_inside_a_batch_is_appended_with_the_outer_one_at_its_end(db: None) -> None:
    with logbook_batch():
        logbook_append(action="outer.first", actor=None)
        with logbook_batch():
            logbook_append(action="inner.one", actor=None)
            logbook_append(action="inner.two", actor=None)
        # The inner batch has ended: its entries wait for the outer one's end, as the outer's do.
        assert not LogbookEntry.objects.exists()
        with pytest.raises(RuntimeError), logbook_batch():
            logbook_append(action="inner.failed", actor=None)
            raise RuntimeError("nothing of this block is written")
        logbook_append(action="outer.last", actor=None)
        assert not LogbookEntry.objects.exists()

    entries = list(LogbookEntry.objects.order_by("id"))
    assert [entry.action for entry in entries] == ["outer.first", "inner.one", "inner.two", "outer.last"]
    assert [entry.prev_hash for entry in entries[1:]] == [entry.hash for entry in entries[:-1]]
    assert all(recomputed(entry) == entry.hash for entry in entries)


def test_an_append_checks_the_references_written_before_it_and_defers_the_rest(world: World) -> None:
    """On PostgreSQL the foreign keys are deferred to the commit; an append runs the checks due so far
    before it takes the head (their locks first: requests_app.services.lifecycle's lock order)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no row locks")
    # The test's transaction never commits: an error can only come from the append itself. (A
    # membership that grants nothing: one that does is recorded, by an append of its own.)
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user_id=2**31 - 1, account=world.prod, role="none")
        logbook_append(action="test.appended", actor=None)

    class Undo(Exception):
        pass

    # A row written after the append is checked at commit again (rolled back here, never checked).
    with pytest.raises(Undo), transaction.atomic():
        logbook_append(action="test.appended", actor=None)
        Membership.objects.create(user_id=2**31 - 1, account=world.prod, role="none")
        raise Undo


def test_every_deferrable_constraint_is_initially_deferred(db: None) -> None:
    """An append sets the constraints back with SET CONSTRAINTS ALL DEFERRED: one declared
    DEFERRABLE INITIALLY IMMEDIATE would be deferred for the rest of its transaction."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's catalogue")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint "
            "WHERE connamespace = current_schema()::regnamespace AND condeferrable AND NOT condeferred"
        )
        assert cursor.fetchall() == []
