"""The From/To times of every page that reads them (the Logbook page, its API and both exports, the
recordings search) with a UTC offset: one PostgreSQL refuses (past ±15:59) or a calendar edge that UTC
moves out of years 1 to 9999 is the field's error, never a 500 and never an export cut off part-way;
any other offset is read in UTC."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone as django_timezone

from audit.models import LogbookEntry
from tests.audit.conftest import append_many, signed_in
from tests.conftest import World

pytestmark = pytest.mark.django_db

OFFSET_REFUSED = "Enter a time zone offset between -15:59 and +15:59."
YEARS_REFUSED = "Enter a time between the years 1 and 9999 in UTC."
REFUSED = [
    pytest.param("2026-06-01T12:00:00+20:00", OFFSET_REFUSED, id="offset-east"),
    pytest.param("2026-06-01T12:00:00-23:59", OFFSET_REFUSED, id="offset-west"),
    pytest.param("9999-12-31T23:59:00-05:00", YEARS_REFUSED, id="after-year-9999"),
    pytest.param("0001-01-01T00:00:00+05:00", YEARS_REFUSED, id="before-year-1"),
]
PAGES = ["/logbook/", "/terminal/recordings/"]
EXPORTS = ["/logbook/export.csv", "/logbook/export.jsonl"]


@pytest.mark.parametrize("url", PAGES)
@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize(("value", "message"), REFUSED)
def test_a_page_shows_the_time_s_error(world: World, url: str, name: str, value: str, message: str) -> None:
    response = signed_in(world.auditor).get(url, {name: value})
    assert response.status_code == 200
    assert message in response.content.decode()


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize(("value", "message"), REFUSED)
def test_the_api_answers_400_naming_the_time(world: World, name: str, value: str, message: str) -> None:
    response = signed_in(world.auditor).get("/api/logbook/", {name: value})
    assert response.status_code == 400
    assert response.json() == {name: [message]}


@pytest.mark.parametrize("url", EXPORTS)
@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize(("value", "message"), REFUSED)
def test_an_export_is_refused_before_it_starts(world: World, url: str, name: str, value: str, message: str) -> None:
    """Not a 200 whose stream dies at the first query: the auditor would hold a cut-off file."""
    append_many(2)
    exports_before = LogbookEntry.objects.filter(action="logbook.exported").count()
    response = signed_in(world.auditor).get(url, {name: value})
    assert response.status_code == 400
    assert not isinstance(response, StreamingHttpResponse)
    assert f"{name}: {message}" in response.content.decode()
    assert LogbookEntry.objects.filter(action="logbook.exported").count() == exports_before  # nothing half-done


def _jsonl_ids(response: Any) -> list[int]:
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    return [json.loads(line)["id"] for line in text.splitlines()]


def test_an_offset_postgresql_takes_is_read_in_utc_everywhere(world: World) -> None:
    entries = append_many(3)
    far_east = timezone(timedelta(hours=15, minutes=59))
    # An hour before the entries, written as a far-eastern clock shows it (the next day, often).
    since = (django_timezone.now() - timedelta(hours=1)).astimezone(far_east).strftime("%Y-%m-%dT%H:%M:%S%z")
    since = since[:-2] + ":" + since[-2:]
    client = signed_in(world.auditor)

    mine = {"action": "test.event"}

    exported = _jsonl_ids(client.get("/logbook/export.jsonl", {**mine, "since": since}))
    listed = [entry["id"] for entry in client.get("/api/logbook/", {**mine, "since": since}).json()["results"]]
    before = client.get("/api/logbook/", {**mine, "until": since}).json()["results"]

    assert exported == [entry.pk for entry in entries]
    assert listed == sorted(exported, reverse=True)
    assert before == []
