"""The walk's plain reader: every entry as a typed row, its hash checked by ``EntryHasher.digest``.

What the walk reads where ``audit.chain_scan`` (COPY text, PostgreSQL only) cannot: on SQLite,
on columns of other types than the model's, and for the few rows the fast reader leaves
UNCHECKED. Its rows have the fast reader's shape (``LightRow``), so the walk treats both alike.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.db import connections

from audit.chain_scan import LightRow
from audit.copy_text import MATCH, MISMATCH, UNKNOWN_KEY
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
_SELECT_ALL = (
    "SELECT id, created_at, actor_id, actor_label, action, account_id, request_id, instance_ids, detail, "
    "prev_hash, hash, key_id FROM audit_logbookentry ORDER BY id"
)


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
