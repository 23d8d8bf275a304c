"""Move recordings made before chunks (one file under MEDIA_ROOT each) into the recordings storage.

Each sealed recording with no chunks is read from ``--from`` (default MEDIA_ROOT), checked
against the SHA-256 it was sealed with, stored as chunks under a new prefix with its manifest,
read back and checked again; only then does its record point at the new copy, and the Logbook
gets a ``recording.migrated`` entry. The old file is left where it was (remove it yourself once
you are satisfied). Safe to run again: migrated recordings are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from terminal.migrate import MigrationProblem, recording_migrate
from terminal.models import TerminalSession


class Command(BaseCommand):
    help = "Copy recordings kept as local files (MEDIA_ROOT) into the recordings storage, as checked chunks."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--from", dest="source", help="The directory the old files are under (MEDIA_ROOT).")
        parser.add_argument("--dry-run", action="store_true", help="Check the files; store and change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        source = Path(options["source"] or settings.MEDIA_ROOT)
        sessions = (
            TerminalSession.objects.filter(ended_at__isnull=False, chunks__isnull=True)
            .exclude(recording_path="")
            .select_related("grant", "user")
            .order_by("pk")
        )
        moved = failed = 0
        for session in sessions:
            try:
                key = recording_migrate(session=session, source=source, dry_run=options["dry_run"])
            except MigrationProblem as problem:
                failed += 1
                self.stderr.write(f"terminal session {session.pk}: {problem}")
                continue
            moved += 1
            self.stdout.write(f"terminal session {session.pk}: {session.recording_path} -> {key}")
        verb = "checked" if options["dry_run"] else "migrated"
        self.stdout.write(f"{moved} recording(s) {verb}, {failed} not.")
        if failed:
            raise CommandError(f"{failed} recording(s) could not be migrated (see above).")
