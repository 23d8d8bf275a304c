"""Writing a checkpoint: the chain's head (entry number, hash, time, key id), signed, to the bucket.

The periodic task (``workers.tasks.checkpoint_logbook``, every PASSPORT_LOGBOOK_CHECKPOINT_SECONDS)
writes one whenever the head has moved since the last one, and otherwise a **heartbeat**: the same
head signed again once its newest checkpoint is half an interval old. Each checkpoint promises,
signed, the next within the interval (``next_within_seconds``), so a stretch of time with none is
itself a finding (``gaps``): entries written and then removed while checkpoints stopped (the head
moved back, the id sequence reset) leave no trace in the chain, only that silence in the bucket.
Every export writes one too. A head it will not sign (entries past it, or not the tip) is not
signed, but the refusal is written to the bucket, signed, all the same (``refusals``). The row kept
in ``LogbookCheckpoint`` is for the Logbook page and spares a look at the bucket while the head
moves; whether the head is signed already, and how recently, the bucket alone says (its keys sort by entry, then time).

What sends the task is not one lock away from silence: every beat sends it, the holder of the
scheduler's advisory lock and the standbys alike (``passport_portal.scheduler``), because any
database role can take that lock. With two beats it is sent twice per interval: the second send
finds the head signed within the half interval and writes nothing (a race writes a duplicate,
which is harmless).
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from audit.anchor.refusals import refusal_write
from audit.anchor.signing import checkpoint_sign
from audit.anchor.storage import EvidenceStoreError, evidence_enabled, evidence_exists, evidence_put
from audit.models import LogbookCheckpoint, LogbookEntry, LogbookHead
from audit.services import canonical_time

logger = logging.getLogger(__name__)

REASONS = ("periodic", "export")  # what callers ask for; "heartbeat" is a periodic one of an unmoved head


def logbook_checkpoint_write(*, reason: str, force: bool = False) -> LogbookCheckpoint | None:
    """Checkpoint the current head; None when the bucket is off, the Logbook empty, or (unless
    ``force``) the head signed already within half an interval. Raises EvidenceStoreError."""
    if reason not in REASONS:
        raise ValueError(f"unknown checkpoint reason {reason!r}")
    if not evidence_enabled():
        return None
    head = _head_and_tip()
    if head is None or head["last_entry_id"] is None:
        return None
    now = timezone.now()
    head_id, tip_id = head["last_entry_id"], head["tip_id"] or 0
    refused = ""
    if tip_id > head_id:
        # Appending moves the head with the entry, in one transaction: entries past it mean the
        # head was held back (or a row slipped in past it), and signing it again would vouch for a
        # chain without them.
        refused = f"LogbookHead names #{head_id}, but the chain goes on past it."
    elif head["entry_hash"] is None or head["entry_hash"] != head["last_hash"] or tip_id != head_id:
        refused = f"LogbookHead names #{head_id}, which is not the chain's tip."
    if refused:
        # Never signed; but the refusal itself goes to the bucket, signed, so that erasing what
        # stood past the head afterwards shows (audit.anchor.refusals). verify_logbook names it.
        refusal_write(
            head_entry_id=head_id,
            head_hash=head["last_hash"],
            tip_id=tip_id,
            tip_hash=head["tip_hash"] or "",
            why=refused,
            now=now,
        )
        raise EvidenceStoreError(refused)
    last = LogbookCheckpoint.objects.order_by("-id").first()
    prefix = _object_prefix(head_id)
    if (
        not force
        and last is not None
        and last.entry_id == head_id
        and last.entry_hash == head["last_hash"]
        # The table is not trusted: a row forged to match the head would stop every checkpoint
        # (and the newest entries could then go unnoticed). The bucket must hold one for this head
        # entry; that its signed hash is the entry's, verify_logbook checks.
        and evidence_exists(prefix)
    ):
        recently = now - timedelta(seconds=settings.PASSPORT_LOGBOOK_CHECKPOINT_SECONDS / 2)
        if evidence_exists(prefix, after=f"{prefix}{recently:%Y%m%dT%H%M%S%fZ}"):
            return None
        reason = "heartbeat"
    fields = {
        "entry_id": head_id,
        "hash": head["entry_hash"],
        "key_id": head["entry_key_id"],
        "entry_at": canonical_time(head["entry_at"]),
        "written_at": canonical_time(now),
        "reason": reason,
        # The promise a stretch without checkpoints breaks (audit.anchor.gaps).
        "next_within_seconds": int(settings.PASSPORT_LOGBOOK_CHECKPOINT_SECONDS),
    }
    object_key = f"{prefix}{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.json"
    version_id = evidence_put(object_key, checkpoint_sign(fields))
    return LogbookCheckpoint.objects.create(
        entry_id=head_id,
        entry_hash=head["entry_hash"],
        key_id=head["entry_key_id"],
        written_at=now,
        reason=reason,
        object_key=object_key,
        version_id=version_id,
    )


def _head_and_tip() -> dict[str, Any] | None:
    """The head row, the entry it names and the chain's highest entry, read in one statement (one
    snapshot: an append committing meanwhile cannot make a sound head look held back)."""
    named = LogbookEntry.objects.filter(pk=OuterRef("last_entry_id"))
    newest = LogbookEntry.objects.order_by("-id")
    return (
        LogbookHead.objects.filter(pk=1)
        .annotate(
            entry_hash=Subquery(named.values("hash")[:1]),
            entry_key_id=Subquery(named.values("key_id")[:1]),
            entry_at=Subquery(named.values("created_at")[:1]),
            tip_id=Subquery(newest.values("id")[:1]),
            tip_hash=Subquery(newest.values("hash")[:1]),
        )
        .values("last_entry_id", "last_hash", "entry_hash", "entry_key_id", "entry_at", "tip_id", "tip_hash")
        .first()
    )


def _object_prefix(entry_id: int) -> str:
    """Where the checkpoints of one head entry are kept: their keys sort by entry, then time."""
    return f"{settings.PASSPORT_EVIDENCE_PREFIX}{entry_id:015d}-"


def logbook_checkpoint_after_export() -> None:
    """Every export anchors the head it was taken at; a failure is logged, the export goes on."""
    try:
        logbook_checkpoint_write(reason="export", force=True)
    except EvidenceStoreError:
        logger.exception("the checkpoint of an export could not be written")
