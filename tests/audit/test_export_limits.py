"""Logbook exports are limited per person and hour (audit.export_limits): past the limit an export
is answered 429 with Retry-After and a message that says how long to wait, reads nothing and records
no export; another auditor is not held back; the next hour starts a new count; the Logbook hears of
the refusals once, with a count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audit.models import LogbookEntry
from audit.refusals import logbook_refusals_flush
from tests.audit.conftest import signed_in
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # 5 s into an hour's window
LIMIT = 3
CSV_URL = "/logbook/export.csv"
JSONL_URL = "/logbook/export.jsonl"


@pytest.fixture(autouse=True)
def limit(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_LOGBOOK_EXPORTS_PER_HOUR = LIMIT
    time_machine.move_to(T0, tick=False)


def test_past_the_limit_an_export_is_answered_429_with_retry_after_and_what_to_do(world: World) -> None:
    client = signed_in(world.auditor)
    # Both formats share the count.
    assert [client.get(url).status_code for url in (CSV_URL, JSONL_URL, CSV_URL)] == [200] * LIMIT
    exported = LogbookEntry.objects.filter(action="logbook.exported").count()
    refused = client.get(JSONL_URL)
    assert refused.status_code == 429
    assert refused["Retry-After"] == str(3600 - 5 + 1)
    assert refused["Content-Type"] == "text/plain; charset=utf-8"
    assert refused.content.decode() == (
        f"Too many Logbook exports: you have asked for more than {LIMIT} in one hour. Wait 3596 seconds and try again."
    )
    # The refused export was not taken, so it is not recorded as one.
    assert LogbookEntry.objects.filter(action="logbook.exported").count() == exported == LIMIT
    # Another auditor is not held back.
    assert signed_in(make_user("auditor2", is_auditor=True)).get(CSV_URL).status_code == 200


def test_the_count_starts_again_in_the_next_hour(world: World, time_machine: Any) -> None:
    client = signed_in(world.auditor)
    for _ in range(LIMIT):
        assert client.get(CSV_URL).status_code == 200
    assert client.get(CSV_URL).status_code == 429
    time_machine.move_to(T0 + timedelta(seconds=3595), tick=False)
    assert client.get(CSV_URL).status_code == 200


def test_someone_who_may_not_review_the_logbook_is_refused_without_using_up_a_count(world: World) -> None:
    client = signed_in(world.requester)
    assert [client.get(CSV_URL).status_code for _ in range(LIMIT + 2)] == [403] * (LIMIT + 2)
    assert not LogbookEntry.objects.filter(action="api.throttled").exists()


def test_a_loop_of_exports_is_one_logbook_entry_and_a_count(world: World, time_machine: Any) -> None:
    client = signed_in(world.auditor)
    codes = [client.get(CSV_URL).status_code for _ in range(20)]
    assert codes == [200] * LIMIT + [429] * (20 - LIMIT)
    throttled = LogbookEntry.objects.filter(action="api.throttled")
    entry = throttled.get()
    assert entry.actor == world.auditor
    assert entry.detail["limit"] == LIMIT
    time_machine.move_to(T0 + timedelta(minutes=6), tick=False)
    assert logbook_refusals_flush() == 1
    summary = throttled.get(detail__summary=True)
    assert summary.detail["counts"] == [
        {"source": f"user:{world.auditor.pk}", "reason": "logbook_exports_per_hour", "count": 20 - LIMIT}
    ]
