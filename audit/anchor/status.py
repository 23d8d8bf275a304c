"""What the Logbook page says about the anchoring: the last checkpoint and the last verification.

The verdict comes from the Logbook itself: the newest ``logbook.verified`` or
``logbook.verification_failed`` entry, whose hash is recomputed here under the Logbook key, so
someone with the database alone can neither forge one nor edit one into "intact" (one that does
not hold reads as NOT intact); nor can someone who also holds a retired key, which signs nothing
after the first entry under a newer key (``audit.key_order``). The ``LogbookVerification`` and
``LogbookCheckpoint`` tables are signed by nothing: what the page shows from them it labels "as
recorded locally", and a newer run recorded only there is shown as such, never as the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F, Subquery
from django.db.models.functions import Coalesce, Greatest

from audit.anchor.storage import evidence_enabled
from audit.anchor.verification import VERIFICATION_FAILED, VERIFIED
from audit.key_order import KeyOrder
from audit.models import LogbookCheckpoint, LogbookEntry, LogbookVerification
from audit.services import LEGACY_KEY_ID, EntryHasher, UnknownLogbookKey, canonical_time


@dataclass(frozen=True)
class LoggedVerdict:
    """The newest verification's entry in the Logbook, and whether its hash holds."""

    entry_id: int
    at: datetime
    genuine: bool  # its keyed hash holds: written by the portal, not inserted or edited
    intact: bool
    exit_code: int | None
    kinds: list[str]
    entries: int | None
    checkpoints: int | None
    verification_id: int | None


@dataclass(frozen=True)
class AnchorStatus:
    enabled: bool
    last_checkpoint: LogbookCheckpoint | None  # as recorded locally: unsigned
    verdict: LoggedVerdict | None
    # A run newer than the verdict that only the LogbookVerification table knows of (unsigned).
    unconfirmed: LogbookVerification | None


def _newest_of(action: str) -> Subquery:
    # One probe of the (action, id) index per action.
    return Subquery(LogbookEntry.objects.filter(action=action).order_by("-id").values("id")[:1])


def _genuine(entry: LogbookEntry) -> bool:
    if entry.key_id == LEGACY_KEY_ID:  # verification entries are never older than keyed hashes
        return False
    try:
        digest = EntryHasher().digest(
            entry.key_id,
            entry.prev_hash,
            canonical_time(entry.created_at),
            entry.actor_id,
            entry.actor_label,
            entry.action,
            entry.account_id,
            entry.request_id,
            entry.instance_ids,
            entry.detail,
        )
    except UnknownLogbookKey:
        return False
    return digest == entry.hash and _key_may_sign(entry)


def _key_may_sign(entry: LogbookEntry) -> bool:
    """Was the entry's key still one that signs where the entry stands (``audit.key_order``)? A
    retired key verifies only the entries before the first under a newer key (or up to its pin):
    its holder (it leaked, say) must not be able to add a verdict that reads as genuine."""
    order = KeyOrder()
    newer = order.newer_than(entry.key_id)
    if not newer:  # the current key
        return True
    pin = order.pin(entry.key_id)
    if pin is not None:
        return entry.pk <= pin
    # One probe of the (key_id, id) index per newer key.
    return not LogbookEntry.objects.filter(key_id__in=newer, id__lt=entry.pk).exists()


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def logged_verdict() -> LoggedVerdict | None:
    """The newest verification entry of the Logbook (one query), or None when there is none."""
    newest = Greatest(Coalesce(_newest_of(VERIFIED), 0), Coalesce(_newest_of(VERIFICATION_FAILED), 0))
    entry = LogbookEntry.objects.alias(newest=newest).filter(id=F("newest")).first()
    if entry is None:
        return None
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    genuine = _genuine(entry)
    kinds = detail.get("kinds")
    return LoggedVerdict(
        entry_id=entry.pk,
        at=entry.created_at,
        genuine=genuine,
        intact=genuine and entry.action == VERIFIED,
        exit_code=_number(detail.get("exit_code")),
        kinds=[str(kind) for kind in kinds] if isinstance(kinds, list) else [],
        entries=_number(detail.get("entries")),
        checkpoints=_number(detail.get("checkpoints")),
        verification_id=_number(detail.get("verification_id")),
    )


def anchor_status() -> AnchorStatus:
    verdict = logged_verdict()
    newest_row = LogbookVerification.objects.order_by("-id").first()
    # A verdict that does not hold reads as NOT intact already; otherwise a row newer than the
    # run the verdict names is one the Logbook never heard of.
    unconfirmed = (
        newest_row
        if newest_row is not None
        and (verdict is None or (verdict.genuine and newest_row.pk > (verdict.verification_id or 0)))
        else None
    )
    return AnchorStatus(
        enabled=evidence_enabled(),
        last_checkpoint=LogbookCheckpoint.objects.order_by("-written_at", "-id").first(),
        verdict=verdict,
        unconfirmed=unconfirmed,
    )
