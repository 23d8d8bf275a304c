"""What the signed checkpoints in the bucket say about the chain in the database.

The bucket is the truth here, never the ``LogbookCheckpoint`` table. For each checkpoint
whose signature holds, the entry it names must still be in the chain with the same hash
and key id; otherwise:

- the entry is there with another hash, or gone from the middle: **rewritten**;
- the chain now ends before it: **truncated** (the newest entries were removed);

an object that is not a checkpoint a trusted key signed is a **bad-signature**; and an
entry older than the grace with no checkpoint written within the grace after it is a
**missing-checkpoint** (entries with legacy-sha256 hashes predate checkpoints and are
not asked for one).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from audit.anchor.refusals import Refusal, refusal_from
from audit.anchor.signing import REFUSAL_FORMAT, BadCheckpoint, checkpoint_open, trusted_public_keys
from audit.anchor.storage import evidence_read_all
from audit.integrity import ChainProblem, ChainReport
from audit.services import LEGACY_KEY_ID, canonical_time


@dataclass(frozen=True)
class Checkpoint:
    entry_id: int
    hash: str
    key_id: str
    written_at: datetime
    object_key: str
    next_within: int | None = None  # signed: the next checkpoint within this many seconds (audit.anchor.gaps)


def checkpoints_load() -> tuple[list[Checkpoint], list[ChainProblem], list[Refusal]]:
    """Every checkpoint version in the bucket, checked; one problem per object that fails; and the
    refusals (``audit.anchor.refusals``), checked the same way."""
    trusted = trusted_public_keys()
    found: list[Checkpoint] = []
    problems: list[ChainProblem] = []
    refusals: list[Refusal] = []
    for stored in evidence_read_all(settings.PASSPORT_EVIDENCE_PREFIX):
        try:
            fields = checkpoint_open(stored.body, trusted)
            written_at = datetime.fromisoformat(fields["written_at"])
        except (BadCheckpoint, ValueError) as error:
            problems.append(
                ChainProblem(
                    "bad-signature",
                    [],
                    f"The object {stored.key!r} (version {stored.version_id}) in the evidence bucket is not a "
                    f"trusted checkpoint: {error}.",
                )
            )
            continue
        if fields["format"] == REFUSAL_FORMAT:
            refusals.append(refusal_from(fields, written_at=written_at, object_key=stored.key))
            continue
        found.append(
            Checkpoint(
                entry_id=fields["entry_id"],
                hash=fields["hash"],
                key_id=fields["key_id"],
                written_at=written_at,
                object_key=stored.key,
                next_within=fields["next_within_seconds"] if type(fields.get("next_within_seconds")) is int else None,
            )
        )
    found.sort(key=lambda checkpoint: (checkpoint.entry_id, checkpoint.written_at))
    return found, problems, refusals


@dataclass(frozen=True)
class _Window:
    """When each entry was covered by a checkpoint, and how late that may be."""

    entry_ids: list[int]  # the checkpoints' entry ids, in order
    earliest: list[datetime]  # earliest[i]: the first time a checkpoint at or after entry_ids[i] was written
    now: datetime
    grace: timedelta


def _missing(window: _Window, entry_id: int, key_id: str, created_at: datetime) -> bool:
    """Is the entry without a checkpoint written within the grace after it? (Legacy entries predate checkpoints.)"""
    if key_id == LEGACY_KEY_ID:
        return False
    index = bisect_left(window.entry_ids, entry_id)
    covered = window.earliest[index] if index < len(window.earliest) else None
    # Not covered yet: missing once the grace has passed; covered: in time or not.
    return (covered or window.now) - created_at > window.grace


class RangeCoverage:
    """The coverage of one range of entries, seen in a worker process in id order (picklable):
    the entries that checkpoints name, and the runs of entries without a checkpoint in time."""

    def __init__(self, window: _Window, named_ids: frozenset[int]) -> None:
        self.window = window
        self.named_ids = named_ids
        self.named: list[tuple[int, str, str]] = []  # (entry id, hash, key id)
        self.runs: list[tuple[int, datetime, int, datetime]] = []  # (first id, its time, last id, its time)
        self.starts_missing = False
        self.ends_missing = False
        self._seen_any = False

    def see(self, *, entry_id: int, entry_hash: str, key_id: str, created_at: datetime) -> None:
        if entry_id in self.named_ids:
            self.named.append((entry_id, entry_hash, key_id))
        missing = _missing(self.window, entry_id, key_id, created_at)
        if missing:
            if self.ends_missing:
                self.runs[-1] = (*self.runs[-1][:2], entry_id, created_at)
            else:
                self.runs.append((entry_id, created_at, entry_id, created_at))
        if not self._seen_any:
            self._seen_any, self.starts_missing = True, missing
        self.ends_missing = missing


class CheckpointCoverage:
    """An ``audit.integrity.EntryObserver``: compares the walk with the checkpoints."""

    def __init__(self, checkpoints: list[Checkpoint], *, now: datetime | None = None) -> None:
        self.checkpoints = checkpoints
        self.now = now or timezone.now()
        self.grace = timedelta(minutes=settings.PASSPORT_LOGBOOK_CHECKPOINT_GRACE_MINUTES)
        self.by_entry: dict[int, list[Checkpoint]] = {}
        for checkpoint in checkpoints:
            self.by_entry.setdefault(checkpoint.entry_id, []).append(checkpoint)
        # earliest[i]: the first time any checkpoint at or after checkpoints[i] was written.
        earliest: list[datetime] = []
        for checkpoint in reversed(checkpoints):
            before = earliest[-1] if earliest else checkpoint.written_at
            earliest.append(min(before, checkpoint.written_at))
        earliest.reverse()
        self.window = _Window([checkpoint.entry_id for checkpoint in checkpoints], earliest, self.now, self.grace)
        self.seen: set[int] = set()
        self.problems: list[ChainProblem] = []
        self._gap: list[tuple[int, datetime]] = []

    def see(self, *, entry_id: int, entry_hash: str, key_id: str, created_at: datetime) -> None:
        self._compare(entry_id, entry_hash, key_id)
        if _missing(self.window, entry_id, key_id, created_at):
            self._gap.append((entry_id, created_at))
        else:
            self._close_gap()

    def _compare(self, entry_id: int, entry_hash: str, key_id: str) -> None:
        for checkpoint in self.by_entry.get(entry_id, []):
            self.seen.add(entry_id)
            if checkpoint.hash != entry_hash or checkpoint.key_id != key_id:
                self.problems.append(
                    ChainProblem(
                        "rewritten",
                        [entry_id],
                        f"Entry #{entry_id} disagrees with the checkpoint written at "
                        f"{canonical_time(checkpoint.written_at)} ({checkpoint.object_key}): the chain up to it "
                        "was rewritten since.",
                    )
                )
                break

    def range_watcher(self) -> RangeCoverage:
        """What a worker process checks for one range of entries (``see`` for each, in id order);
        ``see_range`` then takes its findings, in the walk's order."""
        return RangeCoverage(self.window, frozenset(self.by_entry))

    def see_range(self, watched: RangeCoverage) -> None:
        """A range of entries as ``see`` would have seen them one by one."""
        for entry_id, entry_hash, key_id in watched.named:
            self._compare(entry_id, entry_hash, key_id)
        for number, (first_id, first_at, last_id, last_at) in enumerate(watched.runs):
            if not (number == 0 and watched.starts_missing):
                self._close_gap()  # an entry before this run was covered
            self._gap += [(first_id, first_at), (last_id, last_at)]
        if not watched.ends_missing:
            self._close_gap()

    def _close_gap(self) -> None:
        if not self._gap:
            return
        (first_id, first_at), (last_id, last_at) = self._gap[0], self._gap[-1]
        minutes = settings.PASSPORT_LOGBOOK_CHECKPOINT_GRACE_MINUTES
        self.problems.append(
            ChainProblem(
                "missing-checkpoint",
                [first_id, last_id],
                f"Entries #{first_id} to #{last_id} (written {canonical_time(first_at)} to {canonical_time(last_at)}) "
                f"have no checkpoint within {minutes} minutes: checkpoints were not written, or were kept from "
                "the bucket.",
                period=(first_at, last_at),
            )
        )
        self._gap = []

    def finish(self, report: ChainReport, *, tip_id: int | None) -> None:
        self._close_gap()
        beyond = [entry_id for entry_id in self.by_entry if tip_id is None or entry_id > tip_id]
        gone = sorted(entry_id for entry_id in self.by_entry if entry_id not in self.seen and entry_id not in beyond)
        if beyond:
            newest = max(beyond)
            self.problems.append(
                ChainProblem(
                    "truncated",
                    [newest],
                    f"A checkpoint names entry #{newest}, but the chain ends at "
                    + (f"#{tip_id}" if tip_id is not None else "nothing")
                    + ": the newest entries were removed.",
                )
            )
        for entry_id in gone[:20]:
            self.problems.append(
                ChainProblem(
                    "rewritten",
                    [entry_id],
                    f"A checkpoint names entry #{entry_id}, which is no longer in the chain: it was rewritten since.",
                )
            )
        for problem in self.problems:
            report.add(problem)
