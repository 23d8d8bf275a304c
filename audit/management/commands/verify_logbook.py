"""``manage.py verify_logbook``: check the chain, its keyed hashes and every checkpoint; exit per kind."""

from __future__ import annotations

import os
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.anchor.verification import EXIT_CODES, EXIT_UNCHECKABLE, logbook_verification_run

_EPILOG = (
    "Exit codes: 0 intact; "
    f"{EXIT_UNCHECKABLE} could not check (evidence bucket unreachable, keys misconfigured); "
    "2 usage; "
    + "; ".join(f"{code} {kind}" for kind, code in EXIT_CODES.items())
    + ". With several kinds found, the lowest of their codes. "
    "edited: an entry's content does not match its keyed hash (also an unkeyed or unknown-key hash after "
    "keyed entries began); removed: an entry is missing from the middle; inserted: an entry that is no link "
    "of the chain; rewritten: the chain disagrees with a signed checkpoint; truncated: the chain ends before "
    "the newest checkpoint (or LogbookHead); missing-checkpoint: entries older than the grace with no "
    "checkpoint within it; bad-signature: an object in the bucket that no trusted key signed; head: "
    "LogbookHead disagrees with the tip (its hash, id or time), or was once found dated ahead of the clock "
    "(logbook.head_time_refused); recording-removed: a recording a terminal.ended entry sealed has "
    "chunks or manifest rows missing, or a manifest row naming another object than its own chunk (the session "
    "ids are named); checkpoint-gap: longer than the interval plus the grace with no checkpoint written, "
    "between two or since the newest (checkpointing stopped); misdated: entry times run backwards in id "
    "order, or an entry is dated after the checkpoint that signed it (by more than a minute)."
)


class Command(BaseCommand):
    help = (
        "Walk the Logbook in id order, recompute every keyed hash, check every link, the recorded tip and every "
        "signed checkpoint in the evidence bucket; then, as separate passes, the evidence the entries vouch for "
        "(every sealed recording's chunks still in storage: one listing per recording, no bytes read). Names what "
        "it finds and exits with a code per kind; the verdict is written to the Logbook (logbook.verified or "
        "logbook.verification_failed), where the Logbook page reads it. "
        "Always the whole chain: only recomputing an old entry's hash shows that its content was edited in "
        "place, which a signed checkpoint (a hash) cannot. " + _EPILOG
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=5000,
            help="Entries read per query by the plain reader (SQLite); memory stays flat at any size.",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=min(os.cpu_count() or 1, 8),
            help="Processes that recompute the keyed hashes over ranges of entries, all in the walk's one "
            "snapshot (PostgreSQL; default: one per CPU, at most 8). 1: all in this process.",
        )

        parser.add_argument(
            "--chain-only",
            action="store_true",
            help="Skip the passes after the chain walk (the recordings check): the chain and checkpoints alone.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        verbose = options["verbosity"] >= 2

        def progress(count: int) -> None:
            if verbose:
                self.stdout.write(f"  checked {count:,} entries…")

        verification, _record = logbook_verification_run(
            batch_size=max(1, options["batch_size"]),
            progress=progress,
            jobs=max(1, options["jobs"]),
            evidence_checks=not options["chain_only"],
        )
        elapsed = time.monotonic() - started
        if verification.error:
            raise CommandError(f"Logbook NOT checked: {verification.error}", returncode=EXIT_UNCHECKABLE)
        report = verification.report
        checkpoints = (
            "checkpoints off (no PASSPORT_EVIDENCE_BUCKET)"
            if verification.checkpoints is None
            else f"{verification.checkpoints} checkpoint(s)"
        )
        checkpoints += "".join(f", {name} checked" for name in verification.checked)
        for problem in report.acknowledged:
            # Known to the operator (PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS): said, never failing.
            self.stdout.write(f"acknowledged [{problem.kind}] {problem.message}")
        if verification.intact:
            self.stdout.write(self.style.SUCCESS(f"Logbook intact: {report.entries} entries, {checkpoints}"))
            if verbose:
                self.stdout.write(f"  ({elapsed:.1f} s)")
            return
        for problem in report.problems:
            self.stderr.write(f"[{problem.kind}] {problem.message}")
        if report.problem_count > len(report.problems):
            self.stderr.write(f"… and {report.problem_count - len(report.problems)} more.")
        raise CommandError(
            f"Logbook NOT intact: {report.problem_count} problem(s) found in {report.entries} entries, {checkpoints} "
            f"({', '.join(verification.kinds)}).",
            returncode=verification.exit_code,
        )
