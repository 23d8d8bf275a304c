"""What the entries' times say: do they run forward, and is each dated before it was signed?

An entry's ``created_at`` is hashed, but where it comes from is not: the appending host's
clock, and the tip's time in ``LogbookHead``, which nothing signs. ``audit.services`` never
dates an entry before the tip, nor by a head time beyond the clock plus ``LOGBOOK_CLOCK_SKEW``
(and records ``logbook.head_time_refused`` when the head's time was beyond it). So, beyond
that skew, a **misdated** entry is one

- dated before the entry before it: the times run backwards in id order, so one of the two
  is misdated, and a reviewer's time filter (a time range is an id range) may miss it;
- dated after the first checkpoint at or after it was signed (its ``written_at``, from the
  bucket; for entries no checkpoint covers yet, this run's own clock): it was dated in the
  future when it was written.

And **head**: the tip's time in ``LogbookHead`` is not the tip's own, or a
``logbook.head_time_refused`` entry says it was moved ahead of the clock at some point.
Entries with ``legacy-sha256`` hashes predate all of this and are not asked.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from audit import chain_scan
from audit.anchor.coverage import Checkpoint
from audit.integrity import ChainProblem, ChainReport, EntryObserver
from audit.models import LogbookEntry, LogbookHead
from audit.services import HEAD_TIME_REFUSED, LEGACY_KEY_ID, LOGBOOK_CLOCK_SKEW, canonical_time

# A chain misdated throughout would make a finding of nearly every entry: past this many, one more says how many.
_MAX_FINDINGS = 100
_CAUSE = "LogbookHead's time was moved, or a host's clock was off"


def _duration(delta: timedelta) -> str:
    return str(timedelta(seconds=round(delta.total_seconds())))


@dataclass
class _AheadRun:
    """Consecutive entries each dated beyond the skew after the checkpoint that signed it."""

    first_id: int
    last_id: int
    worst_id: int  # the one furthest ahead
    worst_at: datetime
    signed_at: datetime | None  # the written_at of its checkpoint (None: none yet, the run's clock)
    ahead: timedelta


class RangeTimes:
    """The times of one range of entries, seen in id order (in a worker process: picklable)."""

    def __init__(self, entry_ids: list[int], signed: list[datetime], now: datetime) -> None:
        self.entry_ids = entry_ids  # the checkpoints' entry ids, in order
        self.signed = signed  # signed[i]: when the first checkpoint at or after entry_ids[i] was written
        self.now = now
        self.first: tuple[int, datetime] | None = None
        # The last entry seen (0: none yet), its time, and that less the skew.
        self.previous_id, self.previous_at, self._previous_early = 0, now, now
        self.backwards: list[tuple[int, datetime, int, datetime]] = []  # (earlier id, its time, id, time)
        self.runs: list[_AheadRun] = []
        self.open_run = False  # the last entry seen is in runs[-1]
        self.dropped = 0  # findings past _MAX_FINDINGS

    def see(self, *, entry_id: int, entry_hash: str, key_id: str, created_at: datetime) -> None:
        # Millions of entries: one datetime operation each while nothing is wrong. ``early`` is the
        # entry's time less the skew: the entry before dated after it ran backwards, and ``early``
        # after the signing time means this one is dated ahead.
        if key_id == LEGACY_KEY_ID:
            self.open_run = False
            return
        early = created_at - LOGBOOK_CLOCK_SKEW
        if self.first is None:
            self.first = (entry_id, created_at)
        elif self._previous_early > created_at:
            self._backwards(self.previous_id, self.previous_at, entry_id, created_at)
        self.previous_id, self.previous_at, self._previous_early = entry_id, created_at, early
        index = bisect_left(self.entry_ids, entry_id)
        signed_at = self.signed[index] if index < len(self.signed) else None
        if early <= (signed_at or self.now):
            self.open_run = False
            return
        ahead = created_at - (signed_at or self.now)
        if self.open_run:
            run = self.runs[-1]
            run.last_id = entry_id
            if ahead > run.ahead:
                run.worst_id, run.worst_at, run.signed_at, run.ahead = entry_id, created_at, signed_at, ahead
        elif len(self.runs) < _MAX_FINDINGS:
            self.runs.append(_AheadRun(entry_id, entry_id, entry_id, created_at, signed_at, ahead))
            self.open_run = True
        else:
            self.dropped += 1

    def _backwards(self, earlier_id: int, earlier_at: datetime, entry_id: int, created_at: datetime) -> None:
        if len(self.backwards) < _MAX_FINDINGS:
            self.backwards.append((earlier_id, earlier_at, entry_id, created_at))
        else:
            self.dropped += 1


class EntryTimes(RangeTimes):
    """An ``audit.integrity.EntryObserver`` for the whole walk: takes the ranges back in order."""

    def __init__(self, checkpoints: list[Checkpoint], *, now: datetime | None = None) -> None:
        # signed[i]: the first time any checkpoint at or after checkpoints[i] was written.
        signed: list[datetime] = []
        for checkpoint in reversed(checkpoints):
            signed.append(min(signed[-1], checkpoint.written_at) if signed else checkpoint.written_at)
        signed.reverse()
        super().__init__([checkpoint.entry_id for checkpoint in checkpoints], signed, now or timezone.now())

    def range_watcher(self) -> RangeTimes:
        return RangeTimes(self.entry_ids, self.signed, self.now)

    def see_range(self, watched: RangeTimes) -> None:
        """A range of entries as ``see`` would have seen them one by one."""
        if watched.first is None:
            return
        first_id, first_at = watched.first
        if self.first is None:
            self.first = watched.first
        elif self._previous_early > first_at:
            self._backwards(self.previous_id, self.previous_at, first_id, first_at)
        for found in watched.backwards:
            self._backwards(*found)
        runs = list(watched.runs)
        if runs and runs[0].first_id == first_id and self.open_run:  # one run across the boundary
            run, joined = self.runs[-1], runs.pop(0)
            run.last_id = joined.last_id
            if joined.ahead > run.ahead:
                run.worst_id, run.worst_at, run.signed_at, run.ahead = (
                    joined.worst_id, joined.worst_at, joined.signed_at, joined.ahead,
                )  # fmt: skip
        room = max(0, _MAX_FINDINGS - len(self.runs))
        self.runs += runs[:room]
        self.dropped += watched.dropped + len(runs[room:])
        self.open_run = watched.open_run
        self.previous_id, self.previous_at = watched.previous_id, watched.previous_at
        self._previous_early = watched._previous_early

    def finish(self, report: ChainReport, *, tip_id: int | None) -> None:
        for run in self.runs:
            report.add(_ahead_problem(run))
        for earlier_id, earlier_at, entry_id, created_at in self.backwards:
            report.add(
                ChainProblem(
                    "misdated",
                    [earlier_id, entry_id],
                    f"Entry #{entry_id} is dated {_duration(earlier_at - created_at)} before entry #{earlier_id}, "
                    f"the one before it ({canonical_time(created_at)} after {canonical_time(earlier_at)}): the "
                    f"times run backwards, so one of the two is misdated ({_CAUSE}) and a time filter may miss it.",
                    period=(created_at, earlier_at),
                )
            )
        if self.dropped:
            report.add(ChainProblem("misdated", [], f"… and {self.dropped} more misdated entries or runs of them."))
        tip = (self.previous_id, self.previous_at) if self.first is not None else None
        for problem in _head_time_problems(tip_id, tip):
            report.add(problem)


def _ahead_problem(run: _AheadRun) -> ChainProblem:
    signer = (
        f"the checkpoint written at {canonical_time(run.signed_at)} signed it"
        if run.signed_at is not None
        else "this run's clock, and no checkpoint covers it yet"
    )
    worst = f"#{run.worst_id} is dated {canonical_time(run.worst_at)}, {_duration(run.ahead)} after {signer}"
    if run.first_id == run.last_id:
        said = f"Entry {worst}: it was dated in the future when written"
    else:
        said = (
            f"Entries #{run.first_id} to #{run.last_id} are each dated after the checkpoint that signed them (entry "
            f"{worst}): they were dated in the future when written"
        )
    return ChainProblem(
        "misdated", [run.first_id, run.last_id], f"{said} ({_CAUSE}).", period=(run.worst_at - run.ahead, run.worst_at)
    )


def _head_time_problems(tip_id: int | None, tip: tuple[int, datetime] | None) -> list[ChainProblem]:
    """LogbookHead's time now, and every time it was found ahead of the clock (in the walk's snapshot)."""
    problems = []
    head = LogbookHead.objects.filter(pk=1).first()
    if (
        head is not None
        and head.last_created_at is not None
        and tip is not None
        and head.last_entry_id == tip_id == tip[0]
        and head.last_created_at != tip[1]
    ):
        problems.append(
            ChainProblem(
                "head",
                [tip[0]],
                f"LogbookHead dates the tip #{tip[0]} {canonical_time(head.last_created_at)}, but the entry says "
                f"{canonical_time(tip[1])}: its time was moved, and the next entry would be dated by it.",
            )
        )
    refused = LogbookEntry.objects.filter(action=HEAD_TIME_REFUSED)
    if tip_id is not None:
        refused = refused.filter(id__lte=tip_id)
    for entry_id, detail in refused.order_by("id").values_list("id", "detail")[:_MAX_FINDINGS]:
        details: dict[str, Any] = detail if isinstance(detail, dict) else {}
        problems.append(
            ChainProblem(
                "head",
                [entry_id],
                f"At entry #{entry_id} the recorded tip's time (LogbookHead) was {details.get('head_at')}, ahead "
                f"of the clock ({details.get('clock_at')}): it was moved forward to date entries later than they "
                "happened, or a host's clock ran ahead. It was not taken.",
                # A clock stepped back (an NTP correction) is an event an operator can acknowledge.
                period=_period(details.get("clock_at"), details.get("head_at")),
            )
        )
    return problems


class EntryObservers:
    """Several ``EntryObserver``\\ s as one: each sees every entry (and its own range watcher's findings)."""

    def __init__(self, *observers: EntryObserver) -> None:
        self.observers = observers

    def see(self, *, entry_id: int, entry_hash: str, key_id: str, created_at: datetime) -> None:
        for observer in self.observers:
            observer.see(entry_id=entry_id, entry_hash=entry_hash, key_id=key_id, created_at=created_at)

    def range_watcher(self) -> chain_scan.RangeWatcher:
        return _RangeWatchers(tuple(observer.range_watcher() for observer in self.observers))

    def see_range(self, watched: Any) -> None:
        for observer, its_own in zip(self.observers, watched.watchers, strict=True):
            observer.see_range(its_own)

    def finish(self, report: ChainReport, *, tip_id: int | None) -> None:
        for observer in self.observers:
            observer.finish(report, tip_id=tip_id)


@dataclass
class _RangeWatchers:
    watchers: tuple[chain_scan.RangeWatcher, ...]

    def see(self, *, entry_id: int, entry_hash: str, key_id: str, created_at: datetime) -> None:
        for watcher in self.watchers:
            watcher.see(entry_id=entry_id, entry_hash=entry_hash, key_id=key_id, created_at=created_at)


def _period(start: object, end: object) -> tuple[datetime, datetime] | None:
    """Two ISO times from an entry's detail as a stretch, or None if either is not one."""
    try:
        begins, ends = datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end))
    except ValueError:
        return None
    if begins.tzinfo is None or ends.tzinfo is None:
        return None
    return (min(begins, ends), max(begins, ends))
