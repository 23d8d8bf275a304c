"""What the Logbook page says about the anchoring: the last checkpoint and the last verification.

The verdict comes from the Logbook itself (``audit.anchor.verdict``): the newest ``logbook.verified``
or ``logbook.verification_failed`` entry, whose hash is recomputed under the Logbook key, so
someone with the database alone can neither forge one nor edit one into "intact" (one that does
not hold reads as NOT intact); nor can someone who also holds a retired key, which signs nothing
after the first entry under a newer key (``audit.key_order``). The ``LogbookVerification`` and
``LogbookCheckpoint`` tables are signed by nothing: what the page shows from them it labels "as
recorded locally", and a newer run recorded only there is shown as such, never as the verdict.
A chain-only run is shown as such, with the last full run's verdict its entry carries.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.anchor.storage import evidence_enabled
from audit.anchor.verdict import LoggedVerdict, logged_verdict
from audit.models import LogbookCheckpoint, LogbookVerification

__all__ = ["AnchorStatus", "LoggedVerdict", "anchor_status", "logged_verdict"]


@dataclass(frozen=True)
class AnchorStatus:
    enabled: bool
    last_checkpoint: LogbookCheckpoint | None  # as recorded locally: unsigned
    verdict: LoggedVerdict | None
    # A run newer than the verdict that only the LogbookVerification table knows of (unsigned).
    unconfirmed: LogbookVerification | None


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
