"""Make the recordings bucket (PASSPORT_RECORDINGS_BUCKET) keep what it is given: created with
Object Lock if missing, else versioning on and Object Lock's default retention set; then check
the portal can write there. A local recordings storage needs nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from terminal.storage import StorageUnavailable, bucket_ensure, storage_probe


class Command(BaseCommand):
    help = (
        "Create the S3 bucket of the recordings storage with Object Lock if it is missing; on an existing one "
        "turn versioning on and set Object Lock's default retention (PASSPORT_RECORDINGS_RETENTION_MODE for "
        "PASSPORT_RECORDINGS_RETENTION_DAYS). Then check it takes a write. Fails, naming the step, when the "
        "bucket refuses any of it."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            done = bucket_ensure()
            storage_probe("recordings/setup")
        except StorageUnavailable as error:
            raise CommandError(str(error)) from error
        if options["verbosity"]:
            self.stdout.write(f"{done}; the recordings storage takes a write.")
