"""Exporting the filtered Logbook as CSV or JSON Lines, streamed.

Each record carries every field the hash covers, exactly as hashed (``created_at`` in
UTC ISO 8601, ``instance_ids`` in its stored " i-1 i-2 " form, ``detail`` as JSON), plus
``prev_hash`` and ``hash``, so an auditor can recompute each hash offline:

    sha256(json.dumps({"prev": prev_hash, "at": created_at, "actor_id": actor_id,
                       "actor": actor, "action": action, "account": account_id,
                       "request": request_id, "instances": instance_ids, "detail": detail},
                      sort_keys=True, separators=(",", ":")))

An unfiltered export is the whole chain in order, so the links can be checked too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from asgiref.sync import sync_to_async

from audit.models import LogbookEntry
from audit.selectors import LogbookFilters, logbook_export_batch, logbook_latest_id
from audit.services import canonical_time

EXPORT_COLUMNS = [
    "id",
    "created_at",
    "actor_id",
    "actor",
    "action",
    "account_id",
    "request_id",
    "instance_ids",
    "detail",
    "prev_hash",
    "hash",
]
BATCH_SIZE = 2000


def export_record(entry: LogbookEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "created_at": canonical_time(entry.created_at),
        "actor_id": entry.actor_id,
        "actor": entry.actor_label,
        "action": entry.action,
        "account_id": entry.account_id,
        "request_id": entry.request_id,
        "instance_ids": entry.instance_ids,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _jsonl_chunk(entries: list[LogbookEntry]) -> str:
    return "".join(json.dumps(export_record(entry), sort_keys=True, default=str) + "\n" for entry in entries)


class _CsvChunks:
    """Renders batches of entries to CSV text, header first."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        # Every field quoted: instance_ids keeps its padding spaces through spreadsheets.
        self.writer = csv.writer(self.buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")

    def _take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text

    def header(self) -> str:
        self.writer.writerow(EXPORT_COLUMNS)
        return self._take()

    def __call__(self, entries: list[LogbookEntry]) -> str:
        for entry in entries:
            record = export_record(entry)
            record["detail"] = json.dumps(record["detail"], sort_keys=True, separators=(",", ":"), default=str)
            self.writer.writerow(["" if record[column] is None else record[column] for column in EXPORT_COLUMNS])
        return self._take()


class LogbookExport:
    """One export: the filters, the format, and the newest id it stops at."""

    def __init__(
        self,
        *,
        user: Any,
        filters: LogbookFilters,
        fmt: str,
        up_to_id: int | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.user = user
        self.filters = filters
        self.batch_size = batch_size
        # Fixed when given; otherwise the newest entry when the first byte is sent.
        self.up_to_id = up_to_id
        if fmt == "csv":
            csv_chunks = _CsvChunks()
            self.prelude = csv_chunks.header()
            self.render: Callable[[list[LogbookEntry]], str] = csv_chunks
        else:
            self.prelude = ""
            self.render = _jsonl_chunk

    def _batch(self, after_id: int, up_to_id: int) -> list[LogbookEntry]:
        return logbook_export_batch(
            user=self.user, filters=self.filters, after_id=after_id, up_to_id=up_to_id, size=self.batch_size
        )

    def __iter__(self) -> Iterator[str]:
        """For WSGI (and the test client): each batch is one query."""
        if self.prelude:
            yield self.prelude
        up_to_id = self.up_to_id if self.up_to_id is not None else logbook_latest_id() or 0
        after_id = 0
        while batch := self._batch(after_id, up_to_id):
            yield self.render(batch)
            after_id = batch[-1].pk

    async def __aiter__(self) -> AsyncIterator[str]:
        """For ASGI: Django would otherwise read a sync iterator whole into memory first."""
        if self.prelude:
            yield self.prelude
        up_to_id = self.up_to_id if self.up_to_id is not None else await sync_to_async(logbook_latest_id)() or 0
        after_id = 0
        while batch := await sync_to_async(self._batch)(after_id, up_to_id):
            yield self.render(batch)
            after_id = batch[-1].pk

    def sync_chunks(self) -> Iterator[str]:
        return iter(self)

    def async_chunks(self) -> AsyncIterator[str]:
        return self.__aiter__()
