"""What the Logbook page says about the anchoring: the last checkpoint and the last verification."""

from __future__ import annotations

from dataclasses import dataclass

from audit.anchor.storage import evidence_enabled
from audit.models import LogbookCheckpoint, LogbookVerification


@dataclass(frozen=True)
class AnchorStatus:
    enabled: bool
    last_checkpoint: LogbookCheckpoint | None
    last_verification: LogbookVerification | None


def anchor_status() -> AnchorStatus:
    return AnchorStatus(
        enabled=evidence_enabled(),
        last_checkpoint=LogbookCheckpoint.objects.order_by("-written_at", "-id").first(),
        last_verification=LogbookVerification.objects.order_by("-finished_at", "-id").first(),
    )
