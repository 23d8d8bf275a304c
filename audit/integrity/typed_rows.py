"""The walk's plain reader: every entry as a typed row, its hash checked by ``EntryHasher.digest``.

What the walk reads where ``audit.chain_scan`` (COPY text, PostgreSQL only) cannot: on SQLite,
on columns of other types than the model's, and for the few rows the fast reader leaves
UNCHECKED. Its rows have the fast reader's shape (``LightRow``), so the walk treats both alike.

On PostgreSQL a time Python cannot hold (``infinity``, BC, past year 9999: a database writer's,
never the portal's) is read as None rather than failing the read, and a detail Python cannot
decode counts too: either entry is UNREADABLE (edited), and the walk goes on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.db import connections

from audit.chain_scan import LightRow
from audit.copy_text import DETAIL_DECODE_ERRORS, MATCH, MISMATCH, UNKNOWN_KEY, UNREADABLE
from audit.models import LogbookEntry
from audit.services import EntryHasher, UnknownLogbookKey, canonical_time

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
# created_at only when Python's datetime can hold it (psycopg refuses the whole row otherwise): else NULL.
_PG_COLUMNS = (
    "id, CASE WHEN created_at >= '0001-01-01 00:00:00+00' AND created_at < '10000-01-01 00:00:00+00' "
    "THEN created_at END, actor_id, actor_label, action, account_id, request_id, instance_ids, detail, "
    "prev_hash, hash, key_id FROM audit_logbookentry"
)
_SELECT_ALL = f"SELECT {_PG_COLUMNS} ORDER BY id"
_SELECT_ONE = f"SELECT {_PG_COLUMNS} WHERE id = %s"


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


def _typed_verdict(hasher: EntryHasher, row: tuple[Any, ...]) -> int:
    """MATCH, MISMATCH, UNKNOWN_KEY or UNREADABLE for a typed row (``ENTRY_COLUMNS``)."""
    if row[1] is None:  # a time the portal cannot have written (read as NULL above)
        return UNREADABLE
    try:
        return MATCH if _digest(hasher, row) == row[10] else MISMATCH
    except UnknownLogbookKey:
        return UNKNOWN_KEY
    except DETAIL_DECODE_ERRORS:
        return UNREADABLE


def _typed_rows(batch_size: int, hasher: EntryHasher) -> Iterator[LightRow]:
    """The plain reader's rows (SQLite, or columns of unexpected types), each with its verdict."""
    for row in entry_rows(batch_size):
        yield row[0], row[9], row[10], row[11], row[1], _typed_verdict(hasher, row)


def _typed_row(entry_id: int) -> tuple[Any, ...]:
    """One entry's fields (``ENTRY_COLUMNS``), for a row the fast reader left UNCHECKED (PostgreSQL)."""
    connection = connections[LogbookEntry.objects.db]
    if connection.vendor != "postgresql":
        return LogbookEntry.objects.filter(pk=entry_id).values_list(*ENTRY_COLUMNS).get()
    with connection.cursor() as cursor:
        cursor.execute(_SELECT_ONE, [entry_id])
        return tuple(cursor.fetchone())
