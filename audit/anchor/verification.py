"""The full check of the Logbook (chain, keyed hashes, checkpoints), its exit codes, and its record.

``verify_logbook`` and the daily task both run ``logbook_verification_run``; each run is kept
as a ``LogbookVerification`` row and written to the Logbook itself (``logbook.verified``, or
``logbook.verification_failed`` on a break; the daily task then tells the site admins). The
Logbook page reads the verdict from that entry, whose hash an insider cannot forge.

After the chain walk, the checks other apps hand down (``evidence_check_register``: the apps
that own what an entry vouches for, e.g. terminal's recordings, which audit cannot import) run
as separate passes, so they never slow the walk; ``evidence_checks=False`` leaves them out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import transaction
from django.utils import timezone

from audit.anchor.coverage import CheckpointCoverage, checkpoints_load
from audit.anchor.entry_times import EntryObservers, EntryTimes
from audit.anchor.gaps import checkpoint_gaps
from audit.anchor.refusals import refusal_problems
from audit.anchor.storage import EvidenceStoreError, evidence_enabled
from audit.anchor.verdict import VERIFICATION_FAILED, VERIFIED, last_full_run
from audit.integrity import ChainProblem, ChainReport, EntryObserver, logbook_verify
from audit.models import LogbookVerification
from audit.services import logbook_append

__all__ = ["VERIFICATION_FAILED", "VERIFIED", "logbook_verification_run"]

logger = logging.getLogger(__name__)

# One exit code per kind of finding; with several kinds, the lowest code is the exit code.
EXIT_CODES: dict[str, int] = {
    "edited": 3,
    "removed": 4,
    "inserted": 5,
    "rewritten": 6,
    "truncated": 7,
    "missing-checkpoint": 8,
    "bad-signature": 9,
    "head": 10,
    # A sealed recording (terminal.ended) whose chunks or manifest rows are gone, or whose rows name
    # other objects than their own chunks (terminal.recordings_check).
    "recording-removed": 11,
    # A stretch of time with no checkpoint in the bucket (audit.anchor.gaps).
    "checkpoint-gap": 12,
    # Entry times that run backwards, or an entry dated after its checkpoint (audit.anchor.entry_times).
    "misdated": 13,
}
EXIT_INTACT = 0
EXIT_UNCHECKABLE = 1  # the bucket could not be read, or the keys are not configured


class EvidenceUncheckable(RuntimeError):
    """An evidence check could not read what it checks (its storage failed to answer)."""


class EvidenceCheck(NamedTuple):
    name: str
    # Problems found (kinds from EXIT_CODES); raises EvidenceUncheckable.
    run: Callable[[], list[ChainProblem]]


_checks: dict[str, EvidenceCheck] = {}


def evidence_check_register(*, name: str, run: Callable[[], list[ChainProblem]]) -> None:
    """Add a pass to every full verification (an app's ``ready``); the same name replaces."""
    _checks[name] = EvidenceCheck(name, run)


@dataclass
class Verification:
    report: ChainReport
    checkpoints: int | None  # None: the evidence bucket is not configured
    error: str = ""
    kinds: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # the evidence checks that ran

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_UNCHECKABLE
        return min((EXIT_CODES[kind] for kind in self.kinds), default=EXIT_INTACT)

    @property
    def intact(self) -> bool:
        return not self.error and self.report.intact


def logbook_full_verify(
    *,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
    evidence_checks: bool = True,
) -> Verification:
    """Walk the chain and compare it with every checkpoint in the bucket, then run the evidence
    checks (unless ``evidence_checks`` is False). Reads only."""
    observer: EntryObserver = EntryTimes([])  # without a bucket, the run's clock stands in for checkpoints
    signature_problems: list[ChainProblem] = []
    checkpoints: int | None = None
    if evidence_enabled():
        try:
            loaded, signature_problems, refusals = checkpoints_load()
        except EvidenceStoreError as error:
            return Verification(report=ChainReport(), checkpoints=None, error=str(error))
        checkpoints = len(loaded)
        coverage = CheckpointCoverage(loaded)
        # The bucket's own findings, too: gaps in time, and what the refused checkpoints saw.
        signature_problems += checkpoint_gaps(loaded, now=coverage.now)
        signature_problems += refusal_problems(
            refusals, [(checkpoint.written_at, checkpoint.entry_id, checkpoint.object_key) for checkpoint in loaded]
        )
        observer = EntryObservers(coverage, EntryTimes(loaded, now=coverage.now))
    report = logbook_verify(batch_size=batch_size, progress=progress, observer=observer, jobs=jobs)
    for problem in signature_problems:
        report.add(problem)
    uncheckable, checked = "", []
    for check in list(_checks.values()) if evidence_checks else []:
        try:
            found = check.run()
        except EvidenceUncheckable as exc:
            uncheckable = f"the {check.name} check could not read what it checks: {exc}"
            break
        checked.append(check.name)
        for problem in found:
            report.add(problem)
    kinds = sorted({problem.kind for problem in report.problems}, key=lambda kind: EXIT_CODES.get(kind, 99))
    return Verification(report=report, checkpoints=checkpoints, kinds=kinds, error=uncheckable, checked=checked)


def _summary(verification: Verification, limit: int = 10) -> str:
    if verification.error:
        return verification.error
    lines = [f"[{problem.kind}] {problem.message}" for problem in verification.report.problems[:limit]]
    if verification.report.problem_count > limit:
        lines.append(f"… and {verification.report.problem_count - limit} more.")
    if verification.report.acknowledged:
        lines.append(
            f"{len(verification.report.acknowledged)} acknowledged (PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS), not failing."
        )
    return "\n".join(lines)


def logbook_verification_run(
    *,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
    evidence_checks: bool = True,
) -> tuple[Verification, LogbookVerification]:
    """Run the full check and keep its result: as a ``LogbookVerification`` row and, hashed under the
    Logbook key, as an entry of the Logbook itself (``logbook.verified`` or ``logbook.verification_failed``).
    The row is for the record; nothing signs it, so the Logbook page reads the entry (``audit.anchor.status``).

    A check that fails outright (something in the database no reader expected) is a verdict too:
    not checked (exit 1), recorded and written down like any failure, so the page never goes on
    showing an earlier "intact" and the daily task still tells the site admins."""
    started_at = timezone.now()
    try:
        verification = logbook_full_verify(
            batch_size=batch_size, progress=progress, jobs=jobs, evidence_checks=evidence_checks
        )
    except Exception as exc:
        logger.exception("the Logbook's verification failed before it could finish")
        cause = f"{type(exc).__name__}: {exc}"[:500]
        verification = Verification(
            report=ChainReport(), checkpoints=None, error=f"the check itself failed ({cause}); see the logs"
        )
    with transaction.atomic():
        record = LogbookVerification.objects.create(
            started_at=started_at,
            finished_at=timezone.now(),
            intact=verification.intact,
            entries=verification.report.entries,
            checkpoints=verification.checkpoints or 0,
            exit_code=verification.exit_code,
            kinds=verification.kinds if not verification.error else ["uncheckable"],
            summary=_summary(verification),
        )
        detail: dict[str, Any] = {
            "verification_id": record.pk,
            "exit_code": verification.exit_code,
            "kinds": record.kinds,
            "entries": record.entries,
            "checkpoints": record.checkpoints,
            "problems": verification.report.problem_count,
        }
        if not verification.intact:
            detail["summary"] = record.summary[:2000]
        # What ran; a run that left checks out carries the last full run's verdict (audit.anchor.verdict).
        detail["checks"] = ["chain"] + (["checkpoints"] if verification.checkpoints is not None else [])
        detail["checks"] += verification.checked
        if not evidence_checks and _checks:
            detail.update(partial=True, skipped=sorted(_checks), last_full_run=last_full_run())
        logbook_append(action=VERIFIED if verification.intact else VERIFICATION_FAILED, actor=None, detail=detail)
    return verification, record
