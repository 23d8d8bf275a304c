"""The chain walk: every entry in id order, its hash and its link to the one before, then the
tip against ``LogbookHead``; what each break means is worked out here (``audit.integrity``
describes the kinds). The rows come from ``audit.chain_scan`` (PostgreSQL) or the typed reader
(``audit.integrity.typed_rows``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.db import connections, transaction

from audit import chain_scan
from audit.chain_scan import LightRow
from audit.copy_text import MATCH, UNCHECKED, UNKNOWN_KEY, UNREADABLE
from audit.integrity.report import _MAX_REPORTED, ChainProblem, ChainReport
from audit.integrity.typed_rows import _typed_row, _typed_rows, _typed_verdict
from audit.key_order import KeyOrder
from audit.models import LogbookEntry, LogbookHead
from audit.services import GENESIS_HASH, LEGACY_KEY_ID, EntryHasher


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


def _ids_between(low: int, high: int, limit: int = 20) -> list[int]:
    return list(
        LogbookEntry.objects.filter(id__gt=low, id__lt=high).order_by("id").values_list("id", flat=True)[:limit]
    )


def _short(ids: list[int]) -> str:
    return ", ".join(f"#{entry_id}" for entry_id in ids)


def _hash_problem(
    entry_id: int,
    key_id: str | None,
    verdict: int,
    *,
    keyed_seen: bool,
    legacy_until: int | None,
    order: KeyOrder,
    newest: int | None,
) -> ChainProblem | None:
    """Does the entry's hash hold, under a key that may sign it where it stands (``newest``: the
    age of the newest key whose entries came before it, ``audit.key_order``)? None when it does."""
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
        refusal = order.refusal(entry_id, key_id, newest)
        return ChainProblem("edited", [entry_id], refusal) if refusal is not None else None
    if verdict == UNREADABLE:
        return ChainProblem(
            "edited",
            [entry_id],
            f"Entry #{entry_id} was edited: its time or detail holds a value the portal cannot have written "
            "(a time outside years 1 to 9999, a number or nesting too large to read back).",
        )
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
    order = KeyOrder()
    newest: int | None = None  # the age of the newest key whose entries (their hashes holding) came so far
    expected_prev: str | None = GENESIS_HASH
    previous_id: int | None = None
    previous_at: datetime | None = None  # the last entry's time, for one whose own cannot be read
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
            refused = _range_refusals(row, order, newest)
            newest = order.newest(newest, order.age(row.key_id))
            if observer is not None:
                observer.see_range(row.watched)
            # In the entry-by-entry walk's order: an entry's hash, then its link, then the next entry.
            if refused and refused[0].entry_ids == [row.first_id]:
                report.add(refused.pop(0))
            if row.first_prev != expected_prev:
                _link_problem(report, row.first_id, row.first_prev, previous_id, removed_claims, inserted_ids)
            for problem in refused:
                report.add(problem)
            expected_prev, previous_id, previous_at = row.last_hash, row.last_id, None
            continue
        entry_id, prev_hash, stored_hash, key_id, created_at, verdict = row
        report.entries += 1
        if progress and report.entries % 100_000 == 0:
            progress(report.entries)
        if verdict == UNCHECKED:  # the fast reader left this one to the typed row
            typed = _typed_row(entry_id)
            verdict, created_at = _typed_verdict(hasher, typed), typed[1]

        hash_problem = _hash_problem(
            entry_id, key_id, verdict, keyed_seen=keyed_seen, legacy_until=legacy_until, order=order, newest=newest
        )
        if hash_problem is not None:
            report.add(hash_problem)
        keyed_seen = keyed_seen or key_id != LEGACY_KEY_ID
        if verdict == MATCH:  # an entry that is no one's (edited, unknown key) says nothing of the keys' order
            newest = order.newest(newest, order.age(key_id))
        # An entry whose time cannot be read (reported as edited above) is seen at the time of the one
        # before it: the checkpoints' comparison still sees its hash, the times' check nothing new.
        created_at = created_at or previous_at
        if observer is not None and created_at is not None:
            observer.see(entry_id=entry_id, entry_hash=stored_hash, key_id=key_id, created_at=created_at)  # type: ignore[arg-type]
        previous_at = created_at

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


def _range_refusals(row: chain_scan.CleanRange, order: KeyOrder, newest: int | None) -> list[ChainProblem]:
    """A clean range is all under one key (``row.key_id``), each hash holding: the entries that key
    may not sign where they stand, in id order. Its last entry decides whether there are any (a key
    past its pin signs none of the entries after the pin; a key older than ``newest`` none at
    all); only then are the range's ids read, each refused one said as the entry-by-entry walk says it."""
    if order.refusal(row.last_id, row.key_id, newest) is None:
        return []
    ids = LogbookEntry.objects.filter(id__gte=row.first_id, id__lte=row.last_id).order_by("id")
    problems = []
    for entry_id in ids.values_list("id", flat=True):
        refusal = order.refusal(entry_id, row.key_id, newest)
        if refusal is not None:
            problems.append(ChainProblem("edited", [entry_id], refusal))
    return problems


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
