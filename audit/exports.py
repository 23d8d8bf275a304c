"""Exporting the filtered Logbook as CSV or JSON Lines, streamed.

Each record carries every field the hash covers, exactly as hashed (``created_at`` in
UTC ISO 8601, ``instance_ids`` in its stored " i-1 i-2 " form, ``detail`` as JSON), plus
``prev_hash``, ``hash`` and ``key_id``, so an auditor holding the Logbook key can recompute
each hash offline:

    hmac_sha256(logbook_key[key_id],
                json.dumps({"prev": prev_hash, "at": created_at, "actor_id": actor_id,
                            "actor": actor, "action": action, "account": account_id,
                            "request": request_id, "instances": instance_ids, "detail": detail,
                            "key": key_id},
                           sort_keys=True, separators=(",", ":")))

(entries with ``key_id`` "legacy-sha256", written before keyed hashes, are the plain SHA-256
of the same JSON without "key"). Every export also writes a signed checkpoint of the head.

In CSV, a cell that begins with ``= + - @``, TAB or CR (a username from an identity provider
can) is written with one leading apostrophe, so a spreadsheet shows it as text instead of
running it as a formula; drop that apostrophe before recomputing. JSON Lines is exact.

An unfiltered export is the whole chain in order, so the links can be checked too.

An entry holding a value Python cannot read back (a time outside years 1 to 9999, an integer past
its 4300 digits: only a database writer leaves one, and ``verify_logbook`` names the entry as
edited) is exported with that field's stored text as it is, a string, and in JSON Lines with
``"unreadable"`` naming the fields: its hash cannot be recomputed to match.

Last comes ``instance_names``, outside the hash: the inventory's name today of each instance the
entry names (``{"i-…": "web-1"}``, as JSON text in CSV; ``{}`` when none is known), for reading,
not evidence. Names come from Name tags: as JSON, a CSV cell of them starts with ``{`` and is never
read as a spreadsheet formula.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async

from audit.models import LogbookEntry
from audit.selectors import LogbookFilters, logbook_export_batch, logbook_instance_names, logbook_latest_id
from audit.services import canonical_time
from core.connections import connections_hand_back

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
    "key_id",
    "instance_names",
]
BATCH_SIZE = 2000
# What makes a spreadsheet read a cell as a formula (OWASP's CSV injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# One batch of entries and the names of the instances they name (read with them, in a worker thread).
Batch = tuple[list[LogbookEntry], Mapping[str, str]]


def export_record(entry: LogbookEntry, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    known = names or {}
    record = {
        "id": entry.pk,
        "created_at": entry.unreadable["created_at"]
        if "created_at" in entry.unreadable
        else canonical_time(entry.created_at),
        "actor_id": entry.actor_id,
        "actor": entry.actor_label,
        "action": entry.action,
        "account_id": entry.account_id,
        "request_id": entry.request_id,
        "instance_ids": entry.instance_ids,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
        "key_id": entry.key_id,
        "instance_names": {
            instance_id: known[instance_id] for instance_id in entry.instance_id_list if instance_id in known
        },
    }
    if entry.unreadable:
        record["unreadable"] = sorted(entry.unreadable)
    return record


def _jsonl_chunk(batch: Batch) -> str:
    entries, names = batch
    return "".join(json.dumps(export_record(entry, names), sort_keys=True, default=str) + "\n" for entry in entries)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


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

    def __call__(self, batch: Batch) -> str:
        entries, names = batch
        for entry in entries:
            record = export_record(entry, names)
            if "detail" not in entry.unreadable:  # an unreadable one is its stored text already
                record["detail"] = json.dumps(record["detail"], sort_keys=True, separators=(",", ":"), default=str)
            record["instance_names"] = json.dumps(record["instance_names"], sort_keys=True, separators=(",", ":"))
            self.writer.writerow([_csv_cell(record[column]) for column in EXPORT_COLUMNS])
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
            self.render: Callable[[Batch], str] = csv_chunks
        else:
            self.prelude = ""
            self.render = _jsonl_chunk

    def _batch(self, after_id: int, up_to_id: int) -> Batch:
        """The next entries and their instances' names: two queries, both here (a worker thread under ASGI)."""
        entries = logbook_export_batch(
            user=self.user, filters=self.filters, after_id=after_id, up_to_id=up_to_id, size=self.batch_size
        )
        return entries, logbook_instance_names(entries)

    def __iter__(self) -> Iterator[str]:
        """For WSGI (and the test client): each batch is one query."""
        if self.prelude:
            yield self.prelude
        up_to_id = self.up_to_id if self.up_to_id is not None else logbook_latest_id() or 0
        after_id = 0
        while (batch := self._batch(after_id, up_to_id))[0]:
            yield self.render(batch)
            after_id = batch[0][-1].pk

    def _batch_handed_back(self, after_id: int, up_to_id: int) -> Batch:
        """A batch, its connection then handed back (to the pool, in production) while the client
        reads it: a slow download keeps none of the process's connections between batches."""
        try:
            return self._batch(after_id, up_to_id)
        finally:
            connections_hand_back()

    async def __aiter__(self) -> AsyncIterator[str]:
        """For ASGI: Django would otherwise read a sync iterator whole into memory first."""
        if self.prelude:
            yield self.prelude
        up_to_id = self.up_to_id
        if up_to_id is None:
            up_to_id = await sync_to_async(self._latest_id_handed_back)()
        after_id = 0
        while (batch := await sync_to_async(self._batch_handed_back)(after_id, up_to_id))[0]:
            yield self.render(batch)
            after_id = batch[0][-1].pk

    @staticmethod
    def _latest_id_handed_back() -> int:
        try:
            return logbook_latest_id() or 0
        finally:
            connections_hand_back()

    def sync_chunks(self) -> Iterator[str]:
        return iter(self)

    def async_chunks(self) -> AsyncIterator[str]:
        return self.__aiter__()
