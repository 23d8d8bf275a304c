"""The Logbook's REST list (GET /api/logbook/) is limited per person and minute
(``PASSPORT_LOGBOOK_PAGES_PER_MINUTE``), as its exports are per hour: a script holding an
auditor's session or CLI token cannot page the whole Logbook as fast as it asks. Past the limit a
page is answered 429 with Retry-After and a message saying how long to wait; another auditor is
not held back; the next minute starts a new count; the Logbook hears of the refusals once, with a count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from audit.refusals import logbook_refusals_flush
from tests.audit.conftest import append_many
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # 5 s into a minute's window
LIMIT = 4
URL = "/api/logbook/"


@pytest.fixture(autouse=True)
def limit(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_LOGBOOK_PAGES_PER_MINUTE = LIMIT
    time_machine.move_to(T0, tick=False)


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_paging_the_logbook_past_the_limit_is_answered_429_with_retry_after_and_what_to_do(world: World) -> None:
    append_many(12)
    client = api(world.auditor)
    url: str | None = f"{URL}?limit=1"
    pages = 0
    refused = None
    # Following the "next" links, as a script paging the whole Logbook does.
    while url is not None:
        response = client.get(url)
        if response.status_code != 200:
            refused = response
            break
        pages += 1
        url = response.json()["next"]
    assert pages == LIMIT
    assert refused is not None and refused.status_code == 429
    assert refused["Retry-After"] == str(60 - 5 + 1)
    assert refused.json() == {
        "detail": (
            f"Too many Logbook pages: you have asked for more than {LIMIT} in one minute. "
            "Wait 56 seconds and try again."
        )
    }
    # Another auditor is not held back.
    assert api(make_user("auditor2", is_auditor=True)).get(URL).status_code == 200


def test_the_count_starts_again_in_the_next_minute(world: World, time_machine: Any) -> None:
    client = api(world.auditor)
    assert [client.get(URL).status_code for _ in range(LIMIT + 1)] == [200] * LIMIT + [429]
    time_machine.move_to(T0 + timedelta(seconds=55), tick=False)
    assert client.get(URL).status_code == 200


def test_someone_who_may_not_review_the_logbook_is_refused_without_using_up_a_count(world: World) -> None:
    client = api(world.requester)
    assert [client.get(URL).status_code for _ in range(LIMIT + 2)] == [403] * (LIMIT + 2)
    assert not LogbookEntry.objects.filter(action="api.throttled").exists()


def test_a_loop_of_pages_is_one_logbook_entry_and_a_count(world: World, time_machine: Any) -> None:
    client = api(world.auditor)
    codes = [client.get(URL).status_code for _ in range(15)]
    assert codes == [200] * LIMIT + [429] * (15 - LIMIT)
    entry = LogbookEntry.objects.get(action="api.throttled")
    assert entry.actor == world.auditor
    assert entry.detail["limit"] == LIMIT
    time_machine.move_to(T0 + timedelta(minutes=6), tick=False)
    assert logbook_refusals_flush() == 1
    summary = LogbookEntry.objects.get(action="api.throttled", detail__summary=True)
    assert summary.detail["counts"] == [
        {"source": f"user:{world.auditor.pk}", "reason": "logbook_pages_per_minute", "count": 15 - LIMIT}
    ]
