"""Checking the Logbook's hash chain: is every entry as written, and is every entry there?

The walk reads the entries in id order, in batches by id, so memory stays flat at any
size. What it can tell apart:

- an entry whose content no longer matches its hash: edited;
- an entry whose ``prev_hash`` names an entry further back than the one before it: the
  entries in between were inserted;
- an entry whose ``prev_hash`` names no entry at all: the entry (or entries) before it
  were removed, or the one before it was rewritten together with its hash;
- a tip that disagrees with ``LogbookHead``: entries removed from, or added at, the end.

Gaps in the ids alone prove nothing (a rolled-back append uses up an id), so only the
hashes are trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from audit.models import LogbookEntry, LogbookHead
from audit.services import GENESIS_HASH, canonical_time, entry_digest

_FIELDS = (
    "id",
    "created_at",
    "actor_id",
    "actor_label",
    "action",
    "account_id",
    "request_id",
    "instance_ids",
    "detail",
    "prev_hash",
    "hash",
)
# Past this many problems the chain is plainly broken; stop collecting, keep counting.
_MAX_REPORTED = 200


@dataclass
class ChainProblem:
    kind: str  # "edited", "inserted", "removed", "head"
    entry_ids: list[int]
    message: str


@dataclass
class ChainReport:
    entries: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    problem_count: int = 0

    @property
    def intact(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: ChainProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < _MAX_REPORTED:
            self.problems.append(problem)


def _rows(batch_size: int) -> Iterator[tuple[Any, ...]]:
    last_id = 0
    while True:
        batch = list(LogbookEntry.objects.filter(id__gt=last_id).order_by("id").values_list(*_FIELDS)[:batch_size])
        if not batch:
            return
        yield from batch
        last_id = batch[-1][0]


def _digest(row: tuple[Any, ...]) -> str:
    _id, created_at, actor_id, actor_label, action, account_id, request_id, instance_ids, detail, prev_hash, _ = row
    return entry_digest(
        prev_hash=prev_hash,
        created_at=canonical_time(created_at),
        actor_id=actor_id,
        actor_label=actor_label,
        action=action,
        account_id=account_id,
        request_id=request_id,
        instance_ids=instance_ids,
        detail=detail,
    )


def _ids_between(low: int, high: int, limit: int = 20) -> list[int]:
    return list(
        LogbookEntry.objects.filter(id__gt=low, id__lt=high).order_by("id").values_list("id", flat=True)[:limit]
    )


def _short(ids: list[int]) -> str:
    return ", ".join(f"#{entry_id}" for entry_id in ids)


def logbook_verify(*, batch_size: int = 5000, progress: Callable[[int], None] | None = None) -> ChainReport:
    """Walk the whole chain and report what does not hold. Reads only."""
    report = ChainReport()
    expected_prev = GENESIS_HASH
    previous_id: int | None = None
    # "Removed before #n" is provisional: if #n later turns out to be inserted, its
    # unknown prev_hash is explained and the claim is withdrawn.
    removed_claims: dict[int, ChainProblem] = {}
    inserted_ids: set[int] = set()

    for row in _rows(batch_size):
        entry_id, prev_hash, stored_hash = row[0], row[9], row[10]
        report.entries += 1
        if progress and report.entries % 100_000 == 0:
            progress(report.entries)

        if _digest(row) != stored_hash:
            report.add(
                ChainProblem(
                    "edited",
                    [entry_id],
                    f"Entry #{entry_id} was edited: its content no longer matches its hash.",
                )
            )

        if prev_hash != expected_prev:
            named = LogbookEntry.objects.filter(hash=prev_hash).values_list("id", flat=True).first()
            if named is not None and named < entry_id:
                # The entry links to an earlier one: everything in between is not part of the chain.
                between = _ids_between(named, entry_id)
                inserted_ids.update(between)
                report.add(
                    ChainProblem(
                        "inserted",
                        between,
                        f"Entries {_short(between)} were inserted: #{entry_id} follows #{named} in the chain.",
                    )
                )
            else:
                if previous_id is None:
                    cause = "the first entries of the chain were removed"
                else:
                    cause = (
                        f"an entry after #{previous_id} was removed, or #{previous_id} was rewritten with a new hash"
                    )
                claim = ChainProblem(
                    "removed",
                    [entry_id],
                    f"The chain is broken before entry #{entry_id}: its prev_hash names no entry; {cause}.",
                )
                removed_claims[entry_id] = claim
                if len(removed_claims) > _MAX_REPORTED:  # bounded: only recent claims can be withdrawn
                    del removed_claims[next(iter(removed_claims))]
                report.add(claim)

        expected_prev = stored_hash
        previous_id = entry_id

    for entry_id, claim in removed_claims.items():
        if entry_id in inserted_ids:
            report.problem_count -= 1
            if claim in report.problems:
                report.problems.remove(claim)

    _check_head(report, tip_hash=expected_prev, tip_id=previous_id)
    return report


def _check_head(report: ChainReport, *, tip_hash: str, tip_id: int | None) -> None:
    head = LogbookHead.objects.filter(pk=1).first()
    if head is None:
        if tip_id is not None:
            report.add(ChainProblem("head", [], "LogbookHead is missing, though the Logbook holds entries."))
        return
    if head.last_hash == tip_hash and head.last_entry_id == tip_id:
        return
    named = LogbookEntry.objects.filter(hash=head.last_hash).values_list("id", flat=True).first()
    if named is not None and tip_id is not None and named < tip_id:
        after = _ids_between(named, tip_id + 1)
        report.add(
            ChainProblem(
                "inserted",
                after,
                f"Entries {_short(after)} were added after the recorded tip #{named} (LogbookHead).",
            )
        )
    elif named is None:
        report.add(
            ChainProblem(
                "removed",
                [head.last_entry_id] if head.last_entry_id else [],
                f"The recorded tip #{head.last_entry_id} (LogbookHead) is gone: entries were removed from the end "
                f"of the chain; "
                + (f"the last entry left is #{tip_id}." if tip_id is not None else "no entry is left."),
            )
        )
    else:
        report.add(
            ChainProblem(
                "head",
                [named],
                f"LogbookHead names entry #{head.last_entry_id} but its hash is that of #{named}; "
                f"the chain ends at #{tip_id}.",
            )
        )
