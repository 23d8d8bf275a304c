"""What a verification of the Logbook found: its problems, each of one kind, and the report that
the chain walk, the checkpoints' checks (``audit.anchor``) and the recordings' pass all add to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

# Past this many problems the chain is plainly broken; stop collecting, keep counting.
_MAX_REPORTED = 200


@dataclass
class ChainProblem:
    # "edited", "removed", "inserted", "head", "truncated"; the checkpoints add "rewritten",
    # "missing-checkpoint" and "bad-signature" (audit.anchor.coverage) and "checkpoint-gap"
    # (audit.anchor.gaps), the entries' times "misdated" (audit.anchor.entry_times); the checks
    # after the walk add theirs (terminal.recordings_check: "recording-removed").
    kind: str
    entry_ids: list[int]
    message: str
    # For the time-bound kinds (a checkpoint gap, a missing checkpoint): the stretch it is about.
    period: tuple[datetime, datetime] | None = None


def acknowledged_by_operator(period: tuple[datetime, datetime] | None) -> bool:
    """Is the stretch wholly inside one of PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS? (The setting lives
    where the processes run: someone who can only write the database cannot acknowledge.)"""
    if period is None:
        return False
    start, end = period
    return any(begins <= start and end <= ends for begins, ends in settings.PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS)


@dataclass
class ChainReport:
    entries: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    problem_count: int = 0
    # Problems in a stretch the operator acknowledged: shown, never failing verification.
    acknowledged: list[ChainProblem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: ChainProblem) -> None:
        if acknowledged_by_operator(problem.period):
            if len(self.acknowledged) < _MAX_REPORTED:
                self.acknowledged.append(problem)
            return
        self.problem_count += 1
        if len(self.problems) < _MAX_REPORTED:
            self.problems.append(problem)
