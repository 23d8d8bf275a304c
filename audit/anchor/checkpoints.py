"""Writing a checkpoint: the chain's head (entry number, hash, time, key id), signed, to the bucket.

The periodic task (``workers.tasks.checkpoint_logbook``, every PASSPORT_LOGBOOK_CHECKPOINT_SECONDS)
writes one whenever the head has moved since the last one, and otherwise a **heartbeat**: the same
head signed again once its newest checkpoint is half an interval old. Each checkpoint promises,
signed, the next within the interval (``next_within_seconds``), so a stretch of time with none is
itself a finding (``gaps``): entries written and then removed while checkpoints stopped (the head
moved back, the id sequence reset) leave no trace in the chain, only that silence in the bucket.
Every export writes one too. The row kept in ``LogbookCheckpoint`` is for the Logbook page and
spares a look at the bucket while the head moves; whether the head is signed already, and how
recently, the bucket alone says (its keys sort by entry, then time).

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

from django.conf import settings
from django.utils import timezone

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
    head = LogbookHead.objects.filter(pk=1).first()
    if head is None or head.last_entry_id is None:
        return None
    if LogbookEntry.objects.filter(pk__gt=head.last_entry_id).exists():
        # Appending moves the head with the entry, in one transaction: entries past it mean the
        # head was held back, and signing it again would vouch for a chain without them. No
        # checkpoint, so the stretch shows as a gap; verify_logbook names the head too.
        raise EvidenceStoreError(f"LogbookHead names #{head.last_entry_id}, but the chain goes on past it.")
    now = timezone.now()
    last = LogbookCheckpoint.objects.order_by("-id").first()
    prefix = _object_prefix(head.last_entry_id)
    if (
        not force
        and last is not None
        and last.entry_id == head.last_entry_id
        and last.entry_hash == head.last_hash
        # The table is not trusted: a row forged to match the head would stop every checkpoint
        # (and the newest entries could then go unnoticed). The bucket must hold one for this head
        # entry; that its signed hash is the entry's, verify_logbook checks.
        and evidence_exists(prefix)
    ):
        recently = now - timedelta(seconds=settings.PASSPORT_LOGBOOK_CHECKPOINT_SECONDS / 2)
        if evidence_exists(prefix, after=f"{prefix}{recently:%Y%m%dT%H%M%S%fZ}"):
            return None
        reason = "heartbeat"
    entry = LogbookEntry.objects.filter(pk=head.last_entry_id).values("hash", "key_id", "created_at").first()
    if entry is None or entry["hash"] != head.last_hash:
        # The head row and the tip disagree: never sign that. verify_logbook says what happened.
        raise EvidenceStoreError(f"LogbookHead names #{head.last_entry_id}, which is not the chain's tip.")
    fields = {
        "entry_id": head.last_entry_id,
        "hash": entry["hash"],
        "key_id": entry["key_id"],
        "entry_at": canonical_time(entry["created_at"]),
        "written_at": canonical_time(now),
        "reason": reason,
        # The promise a stretch without checkpoints breaks (audit.anchor.gaps).
        "next_within_seconds": int(settings.PASSPORT_LOGBOOK_CHECKPOINT_SECONDS),
    }
    object_key = f"{prefix}{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.json"
    version_id = evidence_put(object_key, checkpoint_sign(fields))
    return LogbookCheckpoint.objects.create(
        entry_id=head.last_entry_id,
        entry_hash=entry["hash"],
        key_id=entry["key_id"],
        written_at=now,
        reason=reason,
        object_key=object_key,
        version_id=version_id,
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
