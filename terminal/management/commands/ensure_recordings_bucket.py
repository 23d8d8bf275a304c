"""Create the recordings bucket (PASSPORT_RECORDINGS_BUCKET) if it is missing: devcloud's S3 in the
demo, or a first setup. A local recordings storage needs nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from terminal.storage import bucket_ensure, storage_probe


class Command(BaseCommand):
    help = "Create the S3 bucket of the recordings storage if it is missing, then check it takes a write."

    def handle(self, *args: Any, **options: Any) -> None:
        done = bucket_ensure()
        storage_probe("recordings/setup")
        if options["verbosity"]:
            self.stdout.write(f"{done}; the recordings storage takes a write.")
