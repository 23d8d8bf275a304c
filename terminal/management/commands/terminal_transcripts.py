"""Re-extract the searchable text of sealed terminal recordings from their files.

Migration 0002 does this once for recordings that existed before search; run this after
restoring recording files, or after the extraction rules change (``--all``). A recording that
storage does not give back whole, or that does not match the digest sealed with it, is left as
it was (and named on stderr), and the command then exits non-zero; each one indexed is in the
Logbook (``recording.reindexed``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from terminal.models import TerminalSession
from terminal.services import recording_transcript_refresh


class Command(BaseCommand):
    help = "Fill in the searchable text of sealed terminal recordings from their files."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--all", action="store_true", help="Redo every sealed recording, not only those without text."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sessions = TerminalSession.objects.filter(ended_at__isnull=False).exclude(recording_path="")
        if not options["all"]:
            sessions = sessions.filter(transcript="", transcript_input="")
        done = refused = 0
        sessions = sessions.select_related("grant__request__account", "grant__instance", "user")
        for session in sessions.iterator():
            problem = recording_transcript_refresh(session=session)
            if problem is None:
                done += 1
            else:
                refused += 1
                self.stderr.write(f"terminal session {session.pk}: left as it was: {problem}")
        self.stdout.write(f"{done} recording(s) indexed, {refused} left as they were.")
        if refused:
            raise CommandError(f"{refused} recording(s) could not be indexed (see above).")
