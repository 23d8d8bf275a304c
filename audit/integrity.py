"""Checking the Logbook's hash chain: is every entry as written, and is every entry there?

The walk reads the entries in id order, in windows, so memory stays flat at any size; on
PostgreSQL through COPY, each hash checked from its text (``audit.chain_scan``, in parallel
processes with ``jobs``), elsewhere as typed rows. What it can tell apart:

- an entry whose content no longer matches its hash, an HMAC under the Logbook key it names
  (``legacy-sha256`` is accepted only for the prefix written before keyed hashes): edited;
- an entry whose ``prev_hash`` names an entry further back than the one before it: the
  entries in between were inserted;
- an entry whose ``prev_hash`` names no entry at all: the entry (or entries) before it
  were removed, or the one before it was rewritten together with its hash;
- a tip that disagrees with ``LogbookHead``: entries removed from (truncated), or added at, the end.

Someone holding the database and the key can still rewrite a tail consistently; the signed
checkpoints in the evidence bucket catch that (``audit.anchor.coverage``, the ``observer``).

Gaps in the ids alone prove nothing (a rolled-back append uses up an id), so only the
hashes are trusted.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.db import connections, transaction

from audit import chain_scan
from audit.chain_scan import MATCH, MISMATCH, UNCHECKED, UNKNOWN_KEY, LightRow
from audit.models import LogbookEntry, LogbookHead
from audit.services import GENESIS_HASH, LEGACY_KEY_ID, EntryHasher, UnknownLogbookKey, canonical_time

ENTRY_COLUMNS = (
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
    "key_id",
)
_SELECT_ALL = (
    "SELECT id, created_at, actor_id, actor_label, action, account_id, request_id, instance_ids, detail, "
    "prev_hash, hash, key_id FROM audit_logbookentry ORDER BY id"
)
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


def entry_rows(batch_size: int) -> Iterator[tuple[Any, ...]]:
    """Every entry's fields (``ENTRY_COLUMNS``), in id order, as plain tuples (no model instances, no
    per-row converters).

    On PostgreSQL one query streamed through a server-side cursor in fetches of ``batch_size``,
    inside the walk's transaction; elsewhere pages by id.
    """
    connection = connections[LogbookEntry.objects.db]
    if connection.vendor != "postgresql":
        last_id = 0
        while True:
            batch = list(
                LogbookEntry.objects.filter(id__gt=last_id).order_by("id").values_list(*ENTRY_COLUMNS)[:batch_size]
            )
            if not batch:
                return
            yield from batch
            last_id = batch[-1][0]
        return
    connection.ensure_connection()
    with connection.connection.cursor(name=f"logbook_verify_{uuid.uuid4().hex}") as cursor:
        cursor.itersize = batch_size
        cursor.execute(_SELECT_ALL)
        yield from cursor


@contextlib.contextmanager
def _walk_snapshot() -> Iterator[bool]:
    """The walk's transaction: on PostgreSQL one snapshot (REPEATABLE READ) for the entries and
    the head, so entries appended meanwhile are neither half seen nor taken for an insertion.
    Yields whether it is the walk's own snapshot (which other processes can then share)."""
    connection = connections[LogbookEntry.objects.db]
    if connection.vendor != "postgresql":
        yield False
    elif connection.in_atomic_block:  # inside the caller's transaction (tests): its snapshot rules
        with transaction.atomic(using=connection.alias):
            yield False
    else:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield True


class EntryObserver(Protocol):
    """Sees every entry of the walk in id order, then the tip (the checkpoints' check)."""

    def see(self, *, entry_id: int, entry_hash: str, key_id: str, created_at: datetime) -> None: ...

    def range_watcher(self) -> chain_scan.RangeWatcher:
        """A fresh watcher for one range of entries, seen in a worker process (``see_range`` takes it back)."""
        ...

    def see_range(self, watched: Any) -> None:
        """A whole range of entries, as the watcher given to its process saw them."""
        ...

    def finish(self, report: ChainReport, *, tip_id: int | None) -> None: ...


def _digest(hasher: EntryHasher, row: tuple[Any, ...]) -> str:
    detail = row[8]
    return hasher.digest(
        row[11],  # key_id
        row[9],  # prev_hash
        canonical_time(row[1]),
        row[2],  # actor_id
        row[3],  # actor_label
        row[4],  # action
        row[5],  # account_id
        row[6],  # request_id
        row[7],  # instance_ids
        json.loads(detail) if isinstance(detail, str) else detail,  # jsonb arrives as text on PostgreSQL
    )


def _ids_between(low: int, high: int, limit: int = 20) -> list[int]:
    return list(
        LogbookEntry.objects.filter(id__gt=low, id__lt=high).order_by("id").values_list("id", flat=True)[:limit]
    )


def _short(ids: list[int]) -> str:
    return ", ".join(f"#{entry_id}" for entry_id in ids)


def _typed_verdict(hasher: EntryHasher, row: tuple[Any, ...]) -> int:
    """MATCH, MISMATCH or UNKNOWN_KEY for a typed row (``ENTRY_COLUMNS``)."""
    try:
        return MATCH if _digest(hasher, row) == row[10] else MISMATCH
    except UnknownLogbookKey:
        return UNKNOWN_KEY


def _typed_rows(batch_size: int, hasher: EntryHasher) -> Iterator[LightRow]:
    """The plain reader's rows (SQLite, or columns of unexpected types), each with its verdict."""
    for row in entry_rows(batch_size):
        yield row[0], row[9], row[10], row[11], row[1], _typed_verdict(hasher, row)


def _typed_row(entry_id: int) -> tuple[Any, ...]:
    return LogbookEntry.objects.filter(pk=entry_id).values_list(*ENTRY_COLUMNS).get()


def _hash_problem(
    entry_id: int, key_id: str | None, verdict: int, *, keyed_seen: bool, legacy_until: int | None
) -> ChainProblem | None:
    """Does the entry's hash hold, under the key it names? None when it does."""
    if key_id == LEGACY_KEY_ID and (keyed_seen or (legacy_until is not None and entry_id > legacy_until)):
        # Legacy hashes are only the prefix written before the upgrade (up to the pinned id when
        # PASSPORT_LOGBOOK_LEGACY_UNTIL is set); one later is a downgrade.
        return ChainProblem(
            "edited",
            [entry_id],
            f"Entry #{entry_id} carries an unkeyed {LEGACY_KEY_ID} hash after keyed entries began: "
            "it was rewritten by someone without the Logbook key.",
        )
    if verdict == UNKNOWN_KEY:
        return ChainProblem(
            "edited",
            [entry_id],
            f"Entry #{entry_id} names the Logbook key {key_id!r}, which is not configured: it was forged, "
            "or that key was dropped from PASSPORT_LOGBOOK_OLD_KEYS.",
        )
    if verdict == MATCH:
        return None
    return ChainProblem(
        "edited",
        [entry_id],
        f"Entry #{entry_id} was edited: its content no longer matches its hash under key {key_id!r}.",
    )


def logbook_verify(
    *,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
    observer: EntryObserver | None = None,
    jobs: int = 1,
) -> ChainReport:
    """Walk the whole chain and report what does not hold. Reads only.

    On PostgreSQL the rows come through COPY and their hashes are checked from its text
    (``audit.chain_scan``); with ``jobs`` > 1, by that many processes over ranges of ids."""
    report = ChainReport()
    hasher = EntryHasher()
    legacy_until: int | None = settings.PASSPORT_LOGBOOK_LEGACY_UNTIL
    with _walk_snapshot() as own_snapshot:
        connection = connections[LogbookEntry.objects.db]
        rows = (
            chain_scan.scan(
                connection,
                times=observer is not None,
                jobs=jobs,
                parallel_ok=own_snapshot,
                watcher=observer.range_watcher() if observer is not None else None,
            )
            if chain_scan.fast_scan_supported(connection)
            else _typed_rows(batch_size, hasher)
        )
        tip_hash, tip_id = _walk(report, rows, hasher, legacy_until, progress, observer)
        _check_head(report, tip_hash=tip_hash, tip_id=tip_id)
        if observer is not None:
            observer.finish(report, tip_id=tip_id)
    return report


def _walk(
    report: ChainReport,
    rows: Iterator[LightRow | chain_scan.CleanRange],
    hasher: EntryHasher,
    legacy_until: int | None,
    progress: Callable[[int], None] | None,
    observer: EntryObserver | None,
) -> tuple[str | None, int | None]:
    """Check every entry's hash and link, in id order; returns the tip (its hash and id)."""
    keyed_seen = False
    expected_prev: str | None = GENESIS_HASH
    previous_id: int | None = None
    # "Removed before #n" is provisional: if #n later turns out to be inserted, its
    # unknown prev_hash is explained and the claim is withdrawn.
    removed_claims: dict[int, ChainProblem] = {}
    inserted_ids: set[int] = set()

    for row in rows:
        if isinstance(row, chain_scan.CleanRange):
            # A whole range checked by a worker process: all its hashes match under configured
            # keys and its entries link one to the next; only its first link is the walk's.
            before = report.entries
            report.entries += row.count
            if progress:
                for mark in range((before // 100_000 + 1) * 100_000, report.entries + 1, 100_000):
                    progress(mark)
            keyed_seen = True
            if observer is not None:
                observer.see_range(row.watched)
            if row.first_prev != expected_prev:
                _link_problem(report, row.first_id, row.first_prev, previous_id, removed_claims, inserted_ids)
            expected_prev, previous_id = row.last_hash, row.last_id
            continue
        entry_id, prev_hash, stored_hash, key_id, created_at, verdict = row
        report.entries += 1
        if progress and report.entries % 100_000 == 0:
            progress(report.entries)
        if verdict == UNCHECKED:  # the fast reader left this one to the typed row
            typed = _typed_row(entry_id)
            verdict, created_at = _typed_verdict(hasher, typed), typed[1]

        hash_problem = _hash_problem(entry_id, key_id, verdict, keyed_seen=keyed_seen, legacy_until=legacy_until)
        if hash_problem is not None:
            report.add(hash_problem)
        keyed_seen = keyed_seen or key_id != LEGACY_KEY_ID
        if observer is not None:
            observer.see(entry_id=entry_id, entry_hash=stored_hash, key_id=key_id, created_at=created_at)  # type: ignore[arg-type]

        if prev_hash != expected_prev:
            _link_problem(report, entry_id, prev_hash, previous_id, removed_claims, inserted_ids)
        expected_prev = stored_hash
        previous_id = entry_id

    for entry_id, claim in removed_claims.items():
        if entry_id in inserted_ids:
            report.problem_count -= 1
            if claim in report.problems:
                report.problems.remove(claim)
    return expected_prev, previous_id


def _link_problem(
    report: ChainReport,
    entry_id: int,
    prev_hash: str | None,
    previous_id: int | None,
    removed_claims: dict[int, ChainProblem],
    inserted_ids: set[int],
) -> None:
    """Entry ``entry_id`` does not link to the entry before it (``previous_id``): say why."""
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
            cause = f"an entry after #{previous_id} was removed, or #{previous_id} was rewritten with a new hash"
        claim = ChainProblem(
            "removed",
            [entry_id],
            f"The chain is broken before entry #{entry_id}: its prev_hash names no entry; {cause}.",
        )
        removed_claims[entry_id] = claim
        if len(removed_claims) > _MAX_REPORTED:  # bounded: only recent claims can be withdrawn
            del removed_claims[next(iter(removed_claims))]
        report.add(claim)


def _check_head(report: ChainReport, *, tip_hash: str | None, tip_id: int | None) -> None:
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
                "truncated",
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
