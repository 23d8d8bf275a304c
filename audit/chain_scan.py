"""Reading the Logbook fast for the chain walk (PostgreSQL): COPY, each entry's hash checked
from the COPY's text, optionally over id ranges in parallel processes.

What the walk gets per entry: ``(id, prev_hash, hash, key_id, created_at, verdict)``, where
``verdict`` says whether the entry's content still matches its hash (``MATCH``, ``MISMATCH``,
``UNKNOWN_KEY``) or was not checked here (``UNCHECKED``: the walk checks that entry from its
typed row, as the plain reader does). ``created_at`` is filled only when asked for.

Each line's verdict comes from ``audit.copy_text``, which says how it stays exactly as strict
as hashing the typed row (``EntryHasher.digest``); the columns must have the model's types
(``fast_scan_supported``) for the text to be read that way.

The HMAC is computed in Python (``audit.copy_text``): the key never goes to PostgreSQL. The
parallel processes read the walk's own snapshot (``pg_export_snapshot``), so every process sees
the same rows.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import get_context
from typing import Any, Protocol

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from audit.copy_text import MATCH, UNCHECKED, _Checker, _field, canonical_at
from audit.models import LogbookEntry
from audit.services import LEGACY_KEY_ID

LightRow = tuple[int, str | None, str | None, str | None, datetime | None, int]

_TABLE = LogbookEntry._meta.db_table
# The column types the text below is read as; anything else and the walk uses the typed reader.
_TYPES = {
    "id": {"bigint", "integer"},
    "created_at": {"timestamp with time zone"},
    "actor_id": {"bigint", "integer"},
    "actor_label": {"character varying", "text"},
    "action": {"character varying", "text"},
    "account_id": {"character varying", "text"},
    "request_id": {"bigint", "integer"},
    "instance_ids": {"character varying", "text"},
    "detail": {"jsonb"},
    "prev_hash": {"character varying", "text"},
    "hash": {"character varying", "text"},
    "key_id": {"character varying", "text"},
}
# The integers come as text, '' for NULL (an integer's text is never empty): no backslash.
_FULL = sql.SQL(
    "COPY (SELECT id, created_at, COALESCE(actor_id::text, ''), actor_label, action, account_id, "
    "COALESCE(request_id::text, ''), instance_ids, detail, prev_hash, hash, key_id FROM {table} "
    "WHERE id >= {low} AND id < {high} ORDER BY id LIMIT {window}) TO STDOUT"
)
_LIGHT = sql.SQL(
    "COPY (SELECT id, created_at, prev_hash, hash, key_id FROM {table} "
    "WHERE id >= {low} AND id < {high} ORDER BY id LIMIT {window}) TO STDOUT"
)
_WINDOW = 20_000


def fast_scan_supported(connection: BaseDatabaseWrapper) -> bool:
    """PostgreSQL, and the Logbook's columns of the types the COPY text is read as."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [_TABLE],
        )
        types = dict(cursor.fetchall())
    return all(types.get(name) in allowed for name, allowed in _TYPES.items())


@contextmanager
def _no_gc() -> Iterator[None]:
    """The scan makes millions of short-lived objects and no cycles: no collector passes meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _lines(cursor: Any, query: sql.SQL, low: int, high: int) -> Iterator[str]:
    """The rows of COPY TOs of the ids in [low, high), one text line each (without its newline).

    In windows of ``_WINDOW`` rows, each COPY read to its end before its rows are handed on: the
    connection is free again while the walk looks entries up between them."""
    while low < high:
        bound = query.format(
            table=sql.Identifier(_TABLE),
            low=sql.Literal(int(low)),
            high=sql.Literal(int(high)),
            window=sql.Literal(_WINDOW),
        )
        with cursor.copy(bound) as copy:
            lines = [bytes(data).decode()[:-1] for data in copy]
        yield from lines
        if len(lines) < _WINDOW:
            return
        low = int(lines[-1].split("\t", 1)[0]) + 1


def _utc(cursor: Any) -> None:
    cursor.execute("SET LOCAL TimeZone = 'UTC'")
    cursor.execute("SET LOCAL DateStyle = 'ISO, MDY'")


def _full_rows(cursor: Any, low: int, high: int, times: bool) -> Iterator[LightRow]:
    checker = _Checker()
    for line in _lines(cursor, _FULL, low, high):
        fields = line.split("\t")
        verdict = checker.verdict(line, fields)
        yield _light(fields[0], fields[1], fields[9], fields[10], fields[11], line, times, verdict)


def _light(
    entry_id: str, at: str, prev: str, digest: str, key_id: str, line: str, times: bool, verdict: int
) -> LightRow:
    if "\\" in line:
        at, prev, digest, key_id = (_field(value) for value in (at, prev, digest, key_id))  # type: ignore[assignment]
    created_at = None
    if times:
        canonical = canonical_at(at)
        if canonical is None:
            verdict = UNCHECKED  # the walk reads this row typed
        else:
            created_at = datetime.fromisoformat(canonical)
    return int(entry_id), prev, digest, key_id, created_at, verdict


@dataclass(frozen=True)
class CleanRange:
    """A range of ids that a worker process found whole: every entry's hash matches under one
    configured key (not ``legacy-sha256``), and each links to the one before it in the range.
    The walk takes it in one step: only its first link (to the entry before the range), and
    whether its key may sign entries there (``audit.key_order``), are left to check; the per-entry
    walk over it could find nothing else. A range under several keys (a rotation) is read row by row."""

    count: int
    first_id: int
    first_prev: str
    last_id: int
    last_hash: str
    key_id: str
    watched: Any = None  # the RangeWatcher that saw its entries, when the walk has an observer


class RangeWatcher(Protocol):
    """Sees each entry of one range in a worker process, in id order (picklable): what the walk's
    observer hands the workers, and takes back with the range (``EntryObserver.see_range``)."""

    def see(self, *, entry_id: int, entry_hash: str, key_id: str, created_at: datetime) -> None: ...


@dataclass
class _RangeResult:
    count: int
    odd: dict[int, int]  # the verdict of each entry that is not MATCH
    clean: CleanRange | None


def _range_verdicts(
    connection_alias: str, snapshot: str, low: int, high: int, watcher: RangeWatcher | None
) -> _RangeResult:
    """In a worker process: the verdicts of the entries with ids in [low, high), in the walk's
    snapshot: how many entries there are, the verdict of each one that is not MATCH, and the
    range as a ``CleanRange`` when nothing in it needs the walk's eyes (with ``watcher``, which
    has seen each of its entries)."""
    wrapper = connections[connection_alias]
    # A connection of its own: the inherited one belongs to the parent process.
    own = wrapper.get_new_connection(wrapper.get_connection_params())
    try:
        with own.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cursor.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            _utc(cursor)
            count, odd = 0, {}
            linked = True
            first_id, first_prev, last_id, last_hash = "", None, "", None
            first_key: str | None = None
            checker = _Checker()
            with _no_gc():
                for line in _lines(cursor, _FULL, low, high):
                    fields = line.split("\t")
                    verdict = checker.verdict(line, fields)
                    entry_id = fields[0]
                    prev: str | None = fields[9]
                    digest: str | None = fields[10]
                    key_id: str | None = fields[11]
                    if "\\" in line:
                        prev, digest, key_id = _field(fields[9]), _field(fields[10]), _field(fields[11])
                    count += 1
                    if verdict != MATCH:
                        odd[int(entry_id)] = verdict
                    elif key_id == LEGACY_KEY_ID:
                        linked = False  # whether it is allowed here depends on what came before
                    if count == 1:
                        first_id, first_prev, first_key = entry_id, prev, key_id
                    elif prev != last_hash or key_id != first_key:
                        linked = False  # a broken link, or a change of key: the walk reads it row by row
                    last_id, last_hash = entry_id, digest
                    if watcher is not None and linked:
                        at = canonical_at(fields[1])
                        if at is None or digest is None or key_id is None:
                            linked = False  # the walk reads this row typed
                        else:
                            watcher.see(
                                entry_id=int(entry_id), entry_hash=digest, key_id=key_id,
                                created_at=datetime.fromisoformat(at),
                            )  # fmt: skip
        own.rollback()
    finally:
        own.close()
    clean = None
    if count and linked and not odd and first_prev is not None and last_hash is not None and first_key is not None:
        clean = CleanRange(count, int(first_id), first_prev, int(last_id), last_hash, first_key, watcher)
    return _RangeResult(count, odd, clean)


def scan(
    connection: BaseDatabaseWrapper,
    *,
    times: bool,
    jobs: int = 1,
    parallel_ok: bool = False,
    watcher: RangeWatcher | None = None,
) -> Iterator[LightRow | CleanRange]:
    """Every entry in id order with its verdict, inside the caller's (snapshot) transaction.

    With ``jobs`` > 1 and ``parallel_ok`` (the transaction is the walk's own REPEATABLE READ one,
    so its snapshot can be exported), that many processes hash ranges of ids and check the links
    inside each; a range found whole comes as one ``CleanRange`` (when ``times`` asks for every
    entry's time, only with a ``watcher``, which the process shows each of its entries), any other
    is read here (the light columns) and handed on row by row with the verdicts its process found."""
    with connection.cursor() as wrapped, _no_gc():
        cursor = wrapped.cursor
        _utc(cursor)
        if jobs <= 1 or not parallel_ok:
            yield from _full_rows(cursor, 0, 2**63 - 1, times)
            return
        cursor.execute(sql.SQL("SELECT min(id), max(id) FROM {}").format(sql.Identifier(_TABLE)))
        low, high = cursor.fetchone()
        if low is None:
            return
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        yield from _parallel(cursor, connection.alias, snapshot, low, high + 1, jobs, times, watcher)


def _parallel(
    cursor: Any, alias: str, snapshot: str, low: int, high: int, jobs: int, times: bool, watcher: RangeWatcher | None
) -> Iterator[LightRow | CleanRange]:
    pieces = jobs * 4
    step = max(1, -(-(high - low) // pieces))
    bounds = [(start, min(start + step, high)) for start in range(low, high, step)]
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("fork"))
    try:
        futures: list[Future[_RangeResult]] = [
            executor.submit(_range_verdicts, alias, snapshot, start, end, watcher) for start, end in bounds
        ]
        for (start, end), future in zip(bounds, futures, strict=True):
            result = future.result()
            if result.clean is not None and (not times or result.clean.watched is not None):
                yield result.clean  # nothing in it for the walk to read entry by entry
                continue
            seen = 0
            for line in _lines(cursor, _LIGHT, start, end):
                entry_id, at, prev, digest, key_id = line.split("\t")
                seen += 1
                number = int(entry_id)
                yield _light(entry_id, at, prev, digest, key_id, line, times, result.odd.get(number, MATCH))
            if seen != result.count:  # one snapshot: cannot happen unless the database misbehaves
                raise RuntimeError(f"ids {start}-{end}: {seen} entries read but {result.count} hashed")
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
