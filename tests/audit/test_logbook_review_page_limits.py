"""The Logbook's review page (full page and its htmx results) counts its pages per person and
minute on the same limit as the REST list (``PASSPORT_LOGBOOK_PAGES_PER_MINUTE``,
``audit.list_limits``): both run the same keyset query, so paging the whole Logbook through the
page (``before=``, a page at a time) once the API is spent, or the other way round, is held back
too. Past the limit: 429 with Retry-After and a message saying how long to wait; an htmx request
gets the one-line refusal the page shows beside what asked (``core.htmx``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from core.htmx import MESSAGE_HEADER
from tests.audit.conftest import append_many, signed_in
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # 5 s into a minute's window
LIMIT = 3
URL = "/logbook/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def limit(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_LOGBOOK_PAGES_PER_MINUTE = LIMIT
    settings.PASSPORT_LOGBOOK_PAGE_SIZE = 1
    time_machine.move_to(T0, tick=False)


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def older_url(client: Client, url: str) -> str | None:
    """The results fragment's "Older" link (``before=`` the page's last entry), as a reader clicks it."""
    response = client.get(url, **HTMX)
    assert response.status_code == 200, response.content
    marker = 'rel="next" href="'
    text = response.content.decode()
    if marker not in text:
        return None
    start = text.index(marker) + len(marker)
    return text[start : text.index('"', start)].replace("&amp;", "&")


def expected_message(wait: int) -> str:
    return (
        f"Too many Logbook pages: you have asked for more than {LIMIT} in one minute. "
        f"Wait {wait} seconds and try again."
    )


def test_once_the_api_is_spent_the_review_page_does_not_keep_paging(world: World) -> None:
    append_many(12)
    client = api(world.auditor)
    assert [client.get("/api/logbook/?limit=1").status_code for _ in range(LIMIT + 1)] == [200] * LIMIT + [429]
    browser = signed_in(world.auditor)
    # The same person, the same query: the page's results fragment is refused as well.
    assert browser.get(URL, **HTMX).status_code == 429
    assert browser.get(f"{URL}?before=5", **HTMX).status_code == 429
    assert browser.get(URL).status_code == 429


def test_paging_back_through_the_htmx_results_is_refused_with_the_pages_one_line_refusal(world: World) -> None:
    append_many(12)
    browser = signed_in(world.auditor)
    url: str | None = URL
    pages = 0
    while url is not None and pages < LIMIT:
        url = older_url(browser, url)
        pages += 1
    assert url is not None and "before=" in url  # the Logbook has more pages than the limit
    refused = browser.get(url, **HTMX)
    assert refused.status_code == 429
    assert refused["Retry-After"] == str(60 - 5 + 1)
    assert refused[MESSAGE_HEADER] == "1"  # static/js/passport.js shows it beside the link
    assert refused["Content-Type"].startswith("text/plain")
    assert refused.content.decode() == expected_message(56)
    # ...and the API, the same count, is spent for this person too.
    assert api(world.auditor).get("/api/logbook/").status_code == 429


def test_the_whole_page_past_the_limit_is_a_429_page_saying_how_long_to_wait(world: World) -> None:
    append_many(4)
    browser = signed_in(world.auditor)
    assert [browser.get(URL).status_code for _ in range(LIMIT)] == [200] * LIMIT
    refused = browser.get(URL)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "56"
    assert MESSAGE_HEADER not in refused
    body = refused.content.decode()
    assert expected_message(56) in body
    assert "Nothing was changed" not in body  # reading changes nothing; the page says only what to do
    # The refusal is on record once (then counted), as the API's is.
    assert browser.get(URL).status_code == 429
    refusals = LogbookEntry.objects.filter(action="api.throttled", actor=world.auditor)
    assert [entry.detail["limit"] for entry in refusals] == [LIMIT]


def test_another_auditor_is_not_held_back_and_the_next_minute_starts_again(world: World, time_machine: Any) -> None:
    browser = signed_in(world.auditor)
    assert [browser.get(URL, **HTMX).status_code for _ in range(LIMIT + 1)] == [200] * LIMIT + [429]
    assert signed_in(make_user("auditor2", is_auditor=True)).get(URL, **HTMX).status_code == 200
    time_machine.move_to(T0 + timedelta(seconds=55), tick=False)
    assert browser.get(URL, **HTMX).status_code == 200


def test_filters_that_do_not_validate_read_nothing_and_are_not_counted(world: World) -> None:
    browser = signed_in(world.auditor)
    for _ in range(LIMIT + 2):
        response = browser.get(f"{URL}?before=not-a-number", **HTMX)
        assert response.status_code == 200
        assert b"Check the filters" in response.content
    assert browser.get(URL, **HTMX).status_code == 200


def test_someone_who_may_not_review_the_logbook_is_refused_without_using_up_a_count(world: World) -> None:
    browser = signed_in(world.requester)
    assert [browser.get(URL, **HTMX).status_code for _ in range(LIMIT + 2)] == [403] * (LIMIT + 2)
    assert not LogbookEntry.objects.filter(action="api.throttled").exists()
