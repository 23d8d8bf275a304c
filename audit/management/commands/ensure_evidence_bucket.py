"""``manage.py ensure_evidence_bucket``: create the Logbook's evidence bucket with Object Lock, once."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit.anchor.storage import EvidenceStoreError, evidence_bucket_ensure, evidence_enabled


class Command(BaseCommand):
    help = (
        "Create PASSPORT_EVIDENCE_BUCKET with Object Lock enabled when it does not exist (checkpoints are then "
        "written under COMPLIANCE retention of PASSPORT_EVIDENCE_RETENTION_DAYS); fail on a bucket without Object Lock."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not evidence_enabled():
            raise CommandError("PASSPORT_EVIDENCE_BUCKET is not set: checkpoints are off.")
        try:
            outcome = evidence_bucket_ensure()
        except EvidenceStoreError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Evidence bucket {settings.PASSPORT_EVIDENCE_BUCKET}: {outcome}, Object Lock enabled.")
