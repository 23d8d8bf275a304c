"""A Logbook key moved to PASSPORT_LOGBOOK_OLD_KEYS verifies the entries hashed before the rotation
and nothing after: once an entry under a newer key is in the chain, an entry under an older one is
a forgery (by whoever holds the retired key, e.g. after it leaked, and can INSERT), for the chain
walk and for the Logbook page's verdict alike. The keys' order is the current key, then
PASSPORT_LOGBOOK_OLD_KEYS as listed (newest first); an overlap written while processes were being
restarted is accepted only up to the entry PASSPORT_LOGBOOK_OLD_KEYS_UNTIL pins for that key."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.anchor.checkpoints import logbook_checkpoint_write
from audit.anchor.status import logged_verdict
from audit.anchor.verification import VERIFICATION_FAILED, VERIFIED
from audit.genuine import logbook_entry_genuine
from audit.integrity import logbook_verify
from audit.models import LogbookEntry, LogbookHead
from audit.services import EntryHasher, canonical_time, logbook_append
from tests.audit.anchoring import rehash_from, verify_code
from tests.audit.conftest import append_many, raw_sql

pytestmark = pytest.mark.django_db

SECOND_KEY = "the second Logbook key, at least 32 characters"
THIRD_KEY = "the third Logbook key, also at least 32 characters"


@pytest.fixture(autouse=True)
def _keys_restored(settings: Any) -> None:
    """The tests below rotate keys in ``django.conf.settings``: inside this override, undone after each."""
    settings.PASSPORT_LOGBOOK_KEY_ID = settings.PASSPORT_LOGBOOK_KEY_ID
    settings.PASSPORT_LOGBOOK_KEYS = dict(settings.PASSPORT_LOGBOOK_KEYS)
    settings.PASSPORT_LOGBOOK_OLD_KEYS_UNTIL = {}


def _rotate(*, to: str, keys: dict[str, str]) -> None:
    """What an operator's rotation does to the settings: a new current key, older ones kept."""
    settings.PASSPORT_LOGBOOK_KEY_ID = to
    settings.PASSPORT_LOGBOOK_KEYS = keys


def _rotate_to_second() -> str:
    old_key: str = settings.PASSPORT_LOGBOOK_KEYS["logbook-1"]
    _rotate(to="logbook-2", keys={"logbook-2": SECOND_KEY, "logbook-1": old_key})
    return old_key


def _forge_at_tip(
    key_id: str, *, action: str = "request.approved", detail: dict[str, Any] | None = None
) -> LogbookEntry:
    """As an insider with the database (INSERT only) and the retired key would: one entry at the tip."""
    detail = detail if detail is not None else {"approver": "carol", "note": "forged \"'$(id)`\u202e\n"}
    with transaction.atomic():
        head = LogbookHead.objects.select_for_update().get(pk=1)
        at = max(timezone.now(), head.last_created_at or timezone.now())
        digest = EntryHasher().digest(
            key_id, head.last_hash, canonical_time(at), None, "carol", action, "", 4242, "", detail
        )
        entry = LogbookEntry.objects.create(
            created_at=at, actor=None, actor_label="carol", action=action, account_id="",
            request_id=4242, instance_ids="", detail=detail, prev_hash=head.last_hash, hash=digest, key_id=key_id,
        )  # fmt: skip
        LogbookHead.objects.filter(pk=1).update(last_hash=digest, last_entry_id=entry.pk, last_created_at=at)
    return entry


def test_an_entry_forged_after_rotation_with_the_retired_key_is_found(evidence: Any) -> None:
    append_many(2)
    logbook_checkpoint_write(reason="periodic")
    _rotate_to_second()
    after = append_many(2)
    assert {entry.key_id for entry in after} == {"logbook-2"}
    forged = _forge_at_tip("logbook-1")  # the retired key, after entries under the new one
    append_many(2)  # the portal goes on appending after it
    assert logbook_checkpoint_write(reason="periodic", force=True) is not None  # and signs a head past it
    code, said = verify_code()
    assert code == 3, f"entry #{forged.pk} forged under the retired key after the rotation passed: {said}"
    assert f"Entry #{forged.pk} is hashed under the retired Logbook key 'logbook-1'" in said
    report = logbook_verify()
    assert [(problem.kind, problem.entry_ids) for problem in report.problems] == [("edited", [forged.pk])]


def test_the_entries_hashed_before_the_rotation_still_verify(evidence: Any) -> None:
    before = append_many(3)
    logbook_checkpoint_write(reason="periodic")
    _rotate_to_second()
    append_many(3)
    logbook_checkpoint_write(reason="periodic")
    assert {entry.key_id for entry in before} == {"logbook-1"}
    code, said = verify_code()
    assert code == 0, said


def test_a_verdict_forged_with_the_retired_key_does_not_read_as_genuine(db: None) -> None:
    """The page's verdict is recomputed under the key it names; a retired key, still configured so
    older entries verify, must not make a verdict written after the rotation read as genuine."""
    _rotate_to_second()
    logbook_append(action=VERIFICATION_FAILED, actor=None, detail={"exit_code": 3, "kinds": ["edited"]})
    before = logged_verdict()
    assert before is not None and before.genuine and not before.intact
    forged = _forge_at_tip(
        "logbook-1", action=VERIFIED, detail={"exit_code": 0, "kinds": [], "entries": 2, "checkpoints": 0}
    )
    after = logged_verdict()
    assert after is not None and after.entry_id == forged.pk
    assert not after.genuine and not after.intact


def test_a_verdict_written_before_the_rotation_still_reads_as_genuine(db: None) -> None:
    append_many(2)
    logbook_append(action=VERIFIED, actor=None, detail={"exit_code": 0, "kinds": [], "entries": 2, "checkpoints": 0})
    _rotate_to_second()
    append_many(2)  # entries under the new key after it do not make it older than it is
    verdict = logged_verdict()
    assert verdict is not None and verdict.genuine and verdict.intact


def _old_process_appends(count: int) -> list[LogbookEntry]:
    """A process not yet restarted: it still has logbook-1 as its current key."""
    current, keys = settings.PASSPORT_LOGBOOK_KEY_ID, settings.PASSPORT_LOGBOOK_KEYS
    settings.PASSPORT_LOGBOOK_KEY_ID, settings.PASSPORT_LOGBOOK_KEYS = "logbook-1", {"logbook-1": keys["logbook-1"]}
    try:
        return append_many(count, action="test.old_process")
    finally:
        settings.PASSPORT_LOGBOOK_KEY_ID, settings.PASSPORT_LOGBOOK_KEYS = current, keys


def test_a_rolling_restart_is_found_until_the_operator_pins_its_overlap(db: None) -> None:
    append_many(2)
    _rotate_to_second()
    append_many(1)  # a restarted process
    overlap = _old_process_appends(2)  # one still on the old key
    append_many(1)
    report = logbook_verify()
    assert [(problem.kind, problem.entry_ids) for problem in report.problems] == [
        ("edited", [entry.pk]) for entry in overlap
    ]
    assert "PASSPORT_LOGBOOK_OLD_KEYS_UNTIL" in report.problems[0].message

    # The operator checks the overlap was theirs and pins the last entry the old key signed.
    settings.PASSPORT_LOGBOOK_OLD_KEYS_UNTIL = {"logbook-1": overlap[-1].pk}
    assert logbook_verify().intact
    # Nothing after the pin passes under that key, wherever it stands.
    forged = _forge_at_tip("logbook-1")
    report = logbook_verify()
    assert [(problem.kind, problem.entry_ids) for problem in report.problems] == [("edited", [forged.pk])]


def test_a_pinned_key_signs_nothing_after_its_pin_even_before_the_new_key_is_used(db: None) -> None:
    entries = append_many(3)
    _rotate_to_second()
    settings.PASSPORT_LOGBOOK_OLD_KEYS_UNTIL = {"logbook-1": entries[-1].pk}
    forged = _forge_at_tip("logbook-1", action=VERIFIED, detail={"exit_code": 0, "kinds": []})
    report = logbook_verify()
    assert [(problem.kind, problem.entry_ids) for problem in report.problems] == [("edited", [forged.pk])]
    verdict = logged_verdict()
    assert verdict is not None and verdict.entry_id == forged.pk and not verdict.genuine


def test_old_keys_are_ordered_newest_first(db: None) -> None:
    first_key: str = settings.PASSPORT_LOGBOOK_KEYS["logbook-1"]
    by_first = append_many(2)
    _rotate(to="logbook-2", keys={"logbook-2": SECOND_KEY, "logbook-1": first_key})
    by_second = append_many(2)
    _rotate(to="logbook-3", keys={"logbook-3": THIRD_KEY, "logbook-2": SECOND_KEY, "logbook-1": first_key})
    append_many(2)
    assert logbook_verify().intact

    # An entry under the oldest key after the second key's is refused, as one under the second after the third's.
    forged = [_forge_at_tip("logbook-1"), _forge_at_tip("logbook-2")]
    report = logbook_verify()
    assert [(problem.kind, problem.entry_ids) for problem in report.problems] == [
        ("edited", [entry.pk]) for entry in forged
    ]

    # Listed oldest first, the order says the second key's entries came after the first's were
    # retired: found, and the message says where to look.
    settings.PASSPORT_LOGBOOK_KEYS = {"logbook-3": THIRD_KEY, "logbook-1": first_key, "logbook-2": SECOND_KEY}
    report = logbook_verify()
    flagged = {entry_id for problem in report.problems for entry_id in problem.entry_ids}
    assert {entry.pk for entry in by_second} <= flagged and not {entry.pk for entry in by_first} & flagged
    assert "newest first" in report.problems[0].message


def test_one_entry_is_genuine_as_the_walk_would_have_it(settings: Any) -> None:
    """audit.genuine, which the page's verdict and a recording's seal ask of a single entry: its hash
    holds under a key that may sign it where it stands; an unkeyed hash only in the legacy prefix."""
    entries = append_many(5)
    key = settings.PASSPORT_LOGBOOK_KEYS["logbook-1"].encode()
    tip = rehash_from(entries[:2], prev_hash=entries[0].prev_hash, key_id="legacy-sha256")
    tip = rehash_from(entries[2:4], prev_hash=tip, key_id="logbook-1", key=key)
    rehash_from(entries[4:], prev_hash=tip, key_id="legacy-sha256")  # a downgrade after keyed entries

    def genuine(entry: LogbookEntry) -> bool:
        return logbook_entry_genuine(LogbookEntry.objects.get(pk=entry.pk))

    assert [genuine(entry) for entry in entries] == [True, True, True, True, False]
    settings.PASSPORT_LOGBOOK_LEGACY_UNTIL = entries[0].pk
    assert [genuine(entry) for entry in entries[:2]] == [True, False]
    raw_sql("UPDATE audit_logbookentry SET action = 'request.rejected' WHERE id = %s", [entries[3].pk])
    assert not genuine(entries[3])
    _rotate_to_second()
    (newer,) = append_many(1)
    assert genuine(newer) and genuine(entries[2])  # the retired key signs what came before the new key's first
    assert not genuine(_forge_at_tip("logbook-1", detail={}))  # and nothing after it


def _legacy_prefix_then_keyed(settings: Any) -> list[LogbookEntry]:
    """A deployment upgraded from unkeyed hashes: every entry but the last plain SHA-256, pinned."""
    append_many(4)
    everything = list(LogbookEntry.objects.order_by("id"))
    tip = rehash_from(everything[:-1], prev_hash=everything[0].prev_hash, key_id="legacy-sha256")
    key = settings.PASSPORT_LOGBOOK_KEYS[settings.PASSPORT_LOGBOOK_KEY_ID].encode()
    rehash_from(everything[-1:], prev_hash=tip, key_id=settings.PASSPORT_LOGBOOK_KEY_ID, key=key)
    settings.PASSPORT_LOGBOOK_LEGACY_UNTIL = everything[-2].pk
    return list(LogbookEntry.objects.order_by("id"))


def test_an_unkeyed_entry_is_genuine_when_the_chain_after_it_holds_to_the_first_keyed_one(settings: Any) -> None:
    entries = _legacy_prefix_then_keyed(settings)
    assert [logbook_entry_genuine(entry) for entry in entries] == [True] * len(entries)


def test_an_unkeyed_entry_rewritten_with_its_own_hash_redone_is_not_genuine(settings: Any) -> None:
    """Anyone with the database can make an unkeyed entry's own hash hold again (as a recording's seal,
    say): its link to the next entry, up to the first keyed one, is what it cannot redo."""
    entries = _legacy_prefix_then_keyed(settings)
    victim = entries[1]
    detail = {"recording_sha256": "0" * 64}
    digest = EntryHasher().digest(
        key_id="legacy-sha256", prev_hash=victim.prev_hash, created_at=canonical_time(victim.created_at),
        actor_id=victim.actor_id, actor_label=victim.actor_label, action="terminal.ended",
        account_id=victim.account_id, request_id=victim.request_id, instance_ids=victim.instance_ids, detail=detail,
    )  # fmt: skip
    raw_sql(
        "UPDATE audit_logbookentry SET action = 'terminal.ended', detail = %s::jsonb, hash = %s WHERE id = %s",
        ['{"recording_sha256": "' + "0" * 64 + '"}', digest, victim.pk],
    )
    forged = LogbookEntry.objects.get(pk=victim.pk)
    assert forged.hash == digest
    assert not logbook_entry_genuine(forged)
    assert logbook_entry_genuine(entries[-1]), "the keyed entry itself is untouched"
