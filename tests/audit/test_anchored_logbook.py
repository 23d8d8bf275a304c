"""The anchored Logbook against devcloud's S3 and PostgreSQL: keyed hashes, signed checkpoints
under Object Lock, and verify_logbook naming each tampering with its own exit code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.utils import timezone

from audit.anchor.checkpoints import logbook_checkpoint_write
from audit.anchor.signing import FORMAT
from audit.models import LogbookCheckpoint, LogbookEntry, LogbookHead
from audit.services import canonical_time
from tests.audit.anchoring import rehash_from, verify_code
from tests.audit.conftest import append_many, raw_sql

pytestmark = pytest.mark.django_db


def test_an_intact_logbook_with_checkpoints_passes(evidence: Any) -> None:
    append_many(4)
    first = logbook_checkpoint_write(reason="periodic")
    append_many(2)
    second = logbook_checkpoint_write(reason="periodic")
    assert first is not None and second is not None and second.entry_id > first.entry_id
    assert logbook_checkpoint_write(reason="periodic") is None  # the head has not moved: signed just now

    code, said = verify_code()
    assert code == 0, said
    assert "Logbook intact: 6 entries, 2 checkpoint(s)" in said


def test_each_entry_is_an_hmac_under_the_current_key(db: None) -> None:
    (entry,) = append_many(1)
    assert entry.key_id == settings.PASSPORT_LOGBOOK_KEY_ID
    canonical = {
        "prev": entry.prev_hash,
        "at": canonical_time(entry.created_at),
        "actor_id": None,
        "actor": "system",
        "action": entry.action,
        "account": "",
        "request": None,
        "instances": "",
        "detail": entry.detail,
        "key": entry.key_id,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    key = settings.PASSPORT_LOGBOOK_KEYS[entry.key_id].encode()
    assert entry.hash == hmac.new(key, text, hashlib.sha256).hexdigest()
    del canonical["key"]
    assert (
        entry.hash != hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    )


def test_a_whole_chain_rewritten_as_legacy_is_caught_by_the_pinned_legacy_end(db: None, settings: Any) -> None:
    """Without checkpoints, an all-unkeyed rewrite looks like a pre-upgrade Logbook; the pin refuses it."""
    entries = append_many(3)
    rehash_from(entries, prev_hash=entries[0].prev_hash, key_id="legacy-sha256")
    settings.PASSPORT_LOGBOOK_LEGACY_UNTIL = entries[0].pk - 1  # this Logbook had no legacy entries
    code, said = verify_code()
    assert code == 3, said
    assert "unkeyed legacy-sha256 hash" in said


def test_an_edited_entry_exits_3(evidence: Any) -> None:
    entries = append_many(5)
    logbook_checkpoint_write(reason="periodic")
    raw_sql("UPDATE audit_logbookentry SET action = 'request.rejected' WHERE id = %s", [entries[2].pk])
    code, said = verify_code()
    assert code == 3, said
    assert f"[edited] Entry #{entries[2].pk} was edited" in said


@pytest.mark.parametrize(
    ("key_id", "key"),
    [("legacy-sha256", None), ("logbook-1", b"a guess at the Logbook key, which stays off the database")],
    ids=["plain-sha256", "wrong-hmac-key"],
)
def test_delete_and_rehash_of_a_middle_entry_without_the_key_exits_3(
    evidence: Any, key_id: str, key: bytes | None
) -> None:
    """The review's attack: drop an entry, recompute everything after it, move the head. No checkpoint needed."""
    entries = append_many(6)
    victim = entries[2]
    raw_sql("DELETE FROM audit_logbookentry WHERE id = %s", [victim.pk])
    rehash_from(entries[3:], prev_hash=entries[1].hash, key_id=key_id, key=key)

    code, said = verify_code()
    assert code == 3, said
    for rewritten in entries[3:]:
        assert f"Entry #{rewritten.pk}" in said
    assert "[removed]" not in said  # the links hold: only the key gives it away


def test_a_tail_rewritten_with_the_key_is_caught_by_the_checkpoint_exit_6(evidence: Any) -> None:
    """An attacker holding the database AND the key rewrites consistently; the signed checkpoint disagrees."""
    entries = append_many(6)
    checkpoint = logbook_checkpoint_write(reason="periodic")
    assert checkpoint is not None and checkpoint.entry_id == entries[-1].pk
    raw_sql("DELETE FROM audit_logbookentry WHERE id = %s", [entries[2].pk])
    key = settings.PASSPORT_LOGBOOK_KEYS["logbook-1"].encode()
    rehash_from(entries[3:], prev_hash=entries[1].hash, key_id="logbook-1", key=key)

    code, said = verify_code()
    assert code == 6, said
    assert f"[rewritten] Entry #{entries[-1].pk} disagrees with the checkpoint" in said
    assert "[edited]" not in said and "[removed]" not in said


def test_newest_entries_removed_after_a_checkpoint_exit_7(evidence: Any) -> None:
    entries = append_many(6)
    logbook_checkpoint_write(reason="periodic")
    raw_sql("DELETE FROM audit_logbookentry WHERE id >= %s", [entries[4].pk])
    LogbookHead.objects.filter(pk=1).update(last_hash=entries[3].hash, last_entry_id=entries[3].pk)

    code, said = verify_code()
    assert code == 7, said
    assert f"[truncated] A checkpoint names entry #{entries[5].pk}, but the chain ends at #{entries[3].pk}" in said


def test_the_checkpoint_table_is_not_the_truth(evidence: Any) -> None:
    entries = append_many(4)
    logbook_checkpoint_write(reason="periodic")
    LogbookCheckpoint.objects.all().delete()
    code, said = verify_code()
    assert (code, "1 checkpoint(s)" in said) == (0, True), said

    # The newest entries removed (the checkpointed one, and the run's own logbook.verified after it).
    raw_sql("DELETE FROM audit_logbookentry WHERE id >= %s", [entries[3].pk])
    LogbookHead.objects.filter(pk=1).update(last_hash=entries[2].hash, last_entry_id=entries[2].pk)
    code, said = verify_code()
    assert code == 7, said


def test_a_checkpoint_row_forged_to_match_the_head_does_not_stop_the_signing(evidence: Any) -> None:
    # With database writes alone: a row matching the head kept the periodic task from signing
    # it; the newest entries could then be erased with nothing in the bucket naming them.
    start = timezone.now() - timedelta(hours=2)
    with time_machine.travel(start, tick=False):
        kept = append_many(3)
        assert logbook_checkpoint_write(reason="periodic") is not None
    with time_machine.travel(start + timedelta(minutes=10), tick=False):
        erased = append_many(3)
        head = LogbookHead.objects.get(pk=1)
        LogbookCheckpoint.objects.create(
            entry_id=head.last_entry_id, entry_hash=head.last_hash, key_id="logbook-1",
            written_at=timezone.now(), reason="periodic", object_key="forged",
        )  # fmt: skip
        signed = logbook_checkpoint_write(reason="periodic")
        assert signed is not None and signed.entry_id == erased[-1].pk
        assert logbook_checkpoint_write(reason="periodic") is None  # now it is in the bucket
    raw_sql("DELETE FROM audit_logbookentry WHERE id >= %s", [erased[0].pk])
    LogbookHead.objects.filter(pk=1).update(last_hash=kept[-1].hash, last_entry_id=kept[-1].pk)

    code, said = verify_code()
    assert code == 7, said


def test_entries_left_without_a_checkpoint_exit_8(evidence: Any) -> None:
    with time_machine.travel(timezone.now() - timedelta(minutes=30), tick=False):
        old = append_many(3)
    code, said = verify_code()
    assert code == 8, said
    assert f"[missing-checkpoint] Entries #{old[0].pk} to #{old[2].pk}" in said

    # A checkpoint written only now covers them too late: still missing.
    logbook_checkpoint_write(reason="periodic")
    assert verify_code()[0] == 8


def test_entries_checkpointed_in_time_are_not_missing(evidence: Any) -> None:
    start = timezone.now() - timedelta(minutes=30)
    with time_machine.travel(start, tick=False):
        append_many(3)
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        logbook_checkpoint_write(reason="periodic")
    for minute in range(2, 31):  # and a heartbeat every minute since, the head unmoved
        with time_machine.travel(start + timedelta(minutes=minute), tick=False):
            assert logbook_checkpoint_write(reason="periodic") is not None
    code, said = verify_code()
    assert code == 0, said


def _put(s3: Any, key: str, body: bytes) -> None:
    s3.put_object(
        Bucket=settings.PASSPORT_EVIDENCE_BUCKET,
        Key=settings.PASSPORT_EVIDENCE_PREFIX + key,
        Body=body,
        ChecksumAlgorithm="SHA256",
    )


def test_a_checkpoint_signed_by_another_key_exits_9(evidence: Any) -> None:
    (entry,) = append_many(1)
    logbook_checkpoint_write(reason="periodic")
    forger = Ed25519PrivateKey.generate()
    fields = {
        "entry_id": entry.pk,
        "hash": entry.hash,
        "key_id": entry.key_id,
        "entry_at": "x",
        "reason": "periodic",
        "written_at": timezone.now().isoformat(),
        "format": FORMAT,
        "signing_key": "0123456789abcdef",
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    signature = base64.b64encode(forger.sign(canonical)).decode()
    _put(evidence, "forged.json", json.dumps({**fields, "signature": signature}).encode())

    code, said = verify_code()
    assert code == 9, said
    assert "[bad-signature]" in said and "forged.json" in said


def test_a_checkpoint_with_an_altered_field_exits_9(evidence: Any) -> None:
    append_many(2)
    checkpoint = logbook_checkpoint_write(reason="periodic")
    assert checkpoint is not None
    stored = evidence.get_object(Bucket=settings.PASSPORT_EVIDENCE_BUCKET, Key=checkpoint.object_key)["Body"].read()
    altered = {**json.loads(stored), "entry_id": checkpoint.entry_id - 1}
    _put(evidence, "altered.json", json.dumps(altered).encode())
    code, said = verify_code()
    assert code == 9, said
    assert "its signature does not verify" in said


def test_a_checkpoint_object_cannot_be_deleted_or_unlocked(evidence: Any) -> None:
    append_many(1)
    checkpoint = logbook_checkpoint_write(reason="periodic")
    assert checkpoint is not None and checkpoint.version_id
    bucket = settings.PASSPORT_EVIDENCE_BUCKET
    head = evidence.head_object(Bucket=bucket, Key=checkpoint.object_key, VersionId=checkpoint.version_id)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > timezone.now() + timedelta(hours=23)
    with pytest.raises(ClientError, match="AccessDenied"):
        evidence.delete_object(Bucket=bucket, Key=checkpoint.object_key, VersionId=checkpoint.version_id)
    with pytest.raises(ClientError, match="AccessDenied"):
        evidence.put_object_retention(
            Bucket=bucket,
            Key=checkpoint.object_key,
            VersionId=checkpoint.version_id,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": timezone.now() + timedelta(seconds=1)},
        )
    # A plain delete only hides it behind a marker; the verifier reads every version.
    evidence.delete_object(Bucket=bucket, Key=checkpoint.object_key)
    code, said = verify_code()
    assert (code, "1 checkpoint(s)" in said) == (0, True), said


def test_a_rotated_key_keeps_old_entries_verifiable(evidence: Any) -> None:
    before = append_many(3)
    logbook_checkpoint_write(reason="periodic")
    old_key = settings.PASSPORT_LOGBOOK_KEYS["logbook-1"]
    settings.PASSPORT_LOGBOOK_KEY_ID = "logbook-2"
    settings.PASSPORT_LOGBOOK_KEYS = {
        "logbook-2": "the second Logbook key, at least 32 characters",
        "logbook-1": old_key,
    }
    after = append_many(3)
    logbook_checkpoint_write(reason="periodic")
    assert {entry.key_id for entry in before} == {"logbook-1"}
    assert {entry.key_id for entry in after} == {"logbook-2"}
    code, said = verify_code()
    assert code == 0, said

    # Dropping the old key leaves its entries unverifiable, and says which key is missing.
    settings.PASSPORT_LOGBOOK_KEYS = {"logbook-2": settings.PASSPORT_LOGBOOK_KEYS["logbook-2"]}
    code, said = verify_code()
    assert code == 3, said
    assert "names the Logbook key 'logbook-1', which is not configured" in said


def _from(entry: LogbookEntry) -> list[LogbookEntry]:
    """The entry and every one after it, in chain order."""
    return list(LogbookEntry.objects.filter(pk__gte=entry.pk).order_by("pk"))


def test_legacy_entries_before_the_upgrade_stay_verifiable_but_not_after(evidence: Any) -> None:
    legacy = append_many(3)
    legacy_tip = rehash_from(legacy, prev_hash=legacy[0].prev_hash, key_id="legacy-sha256")  # as before the upgrade
    keyed = append_many(2)
    logbook_checkpoint_write(reason="periodic")
    assert verify_code()[0] == 0
    assert LogbookEntry.objects.filter(key_id="legacy-sha256").count() == 3

    # Downgrading a keyed entry to the unkeyed scheme is a rewrite, links or not (and each run's
    # own verdict entry after it with it, so the chain stays consistent).
    rehash_from(_from(keyed[1]), prev_hash=keyed[0].hash, key_id="legacy-sha256")
    code, said = verify_code()
    assert code == 3, said
    assert f"Entry #{keyed[1].pk} carries an unkeyed legacy-sha256 hash after keyed entries began" in said

    # Downgrading every keyed entry looks like an older Logbook; the signed checkpoint disagrees.
    rehash_from(_from(keyed[0]), prev_hash=legacy_tip, key_id="legacy-sha256")
    code, said = verify_code()
    assert code == 6, said


def test_an_unreachable_bucket_exits_1(evidence: Any, settings: Any) -> None:
    append_many(1)
    settings.PASSPORT_EVIDENCE_BUCKET = "no-such-evidence-bucket"
    code, said = verify_code()
    assert code == 1, said
    assert "Logbook NOT checked" in said


def test_every_verification_is_recorded(evidence: Any) -> None:
    from audit.models import LogbookVerification

    append_many(2)
    logbook_checkpoint_write(reason="periodic")
    verify_code()
    record = LogbookVerification.objects.get()
    assert (record.intact, record.exit_code, record.entries, record.checkpoints) == (True, 0, 2, 1)
