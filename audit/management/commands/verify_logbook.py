"""``manage.py verify_logbook``: recompute the hash chain and say whether it holds."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.integrity import logbook_verify


class Command(BaseCommand):
    help = (
        "Walk the Logbook in id order, recompute every hash and check every link and the recorded tip. "
        "Exits non-zero, naming the entries, when an entry was edited, inserted or removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=5000, help="Entries read per query (memory stays flat at any size)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        verbose = options["verbosity"] >= 2

        def progress(count: int) -> None:
            if verbose:
                self.stdout.write(f"  checked {count:,} entries…")

        report = logbook_verify(batch_size=max(1, options["batch_size"]), progress=progress)
        elapsed = time.monotonic() - started
        if report.intact:
            self.stdout.write(self.style.SUCCESS(f"Logbook intact: {report.entries} entries"))
            if verbose:
                self.stdout.write(f"  ({elapsed:.1f} s)")
            return
        for problem in report.problems:
            self.stderr.write(f"[{problem.kind}] {problem.message}")
        if report.problem_count > len(report.problems):
            self.stderr.write(f"… and {report.problem_count - len(report.problems)} more.")
        raise CommandError(f"Logbook NOT intact: {report.problem_count} problem(s) found in {report.entries} entries.")
