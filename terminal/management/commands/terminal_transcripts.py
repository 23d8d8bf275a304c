"""Rebuild the searchable text of sealed terminal recordings from their files.

Migration 0002 does this once for recordings that existed before search; run this after
restoring recording files (it fills in those without text), and with ``--all`` after an upgrade
that changes how the text is extracted (terminal.transcript, terminal.vt), so that recordings
sealed before it are searched as new ones are. Each recording is read back from storage a chunk
at a time, as sealing reads it, in batches of ``--batch-size`` with a progress line after each.

A recording whose text comes out the same is left alone, so the command can be run again (or
resumed with ``--after``, the last id a progress line names) and redoes nothing. A recording
that storage does not give back whole, or that does not match the digest sealed with it, is left
as it was (and named on stderr), and the command then exits non-zero; each one whose text is
replaced is in the Logbook (``recording.reindexed``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from terminal.models import TerminalSession
from terminal.services import recording_transcript_refresh

_TRANSCRIPT_FIELDS = ("transcript", "transcript_input", "transcript_index")


class Command(BaseCommand):
    help = "Rebuild the searchable text of sealed terminal recordings from their files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all",
            action="store_true",
            help="Rebuild every sealed recording (after an upgrade changing the text), not only those without text.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=100, help="Recordings read per batch, with a progress line after each."
        )
        parser.add_argument("--after", type=int, default=0, help="Start after this terminal session id (to resume).")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        sessions = TerminalSession.objects.filter(ended_at__isnull=False, pk__gt=options["after"])
        sessions = sessions.exclude(recording_path="")
        if not options["all"]:
            sessions = sessions.filter(transcript="", transcript_input="")
        ids = list(sessions.order_by("pk").values_list("pk", flat=True))
        rebuilt = unchanged = refused = 0
        for start in range(0, len(ids), batch_size):
            batch = (
                TerminalSession.objects.filter(pk__in=ids[start : start + batch_size])
                .defer(*_TRANSCRIPT_FIELDS)
                .select_related("grant__request__account", "grant__instance", "user")
                .order_by("pk")
            )
            for session in batch:
                result = recording_transcript_refresh(session=session)
                if result.problem:
                    refused += 1
                    self.stderr.write(f"terminal session {session.pk}: left as it was: {result.problem}")
                elif result.changed:
                    rebuilt += 1
                else:
                    unchanged += 1
            done = min(start + batch_size, len(ids))
            self.stdout.write(
                f"{done}/{len(ids)} read (up to terminal session {ids[done - 1]}): "
                f"{rebuilt} rebuilt, {unchanged} unchanged, {refused} left as they were"
            )
        self.stdout.write(f"{rebuilt} recording(s) indexed, {unchanged} unchanged, {refused} left as they were.")
        if refused:
            raise CommandError(f"{refused} recording(s) could not be indexed (see above).")
