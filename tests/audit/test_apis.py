"""GET /api/logbook/: auditors only, the page's filters validated, keyset pages by link."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.audit.conftest import HUGE_NUMBER, INFINITE_TIME, append_many, make_unreadable, on_postgresql
from tests.audit.fixtures import SampleLogbook
from tests.conftest import World

pytestmark = pytest.mark.django_db

URL = "/api/logbook/"


def api(user: Any = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def result_ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_an_auditor_lists_entries_newest_first(world: World, sample: SampleLogbook) -> None:
    response = api(world.auditor).get(URL)
    assert result_ids(response) == [entry.pk for entry in sample.all]
    row = response.json()["results"][-1]
    assert row == {
        "id": sample.created.pk,
        "created_at": "2026-03-01T09:00:00Z",
        "actor": "alice",
        "actor_id": world.requester.pk,
        "action": "request.created",
        "account_id": "111111111111",
        "request_id": 11,
        "instance_ids": [world.web.instance_id],
        "detail": {"reason": "Disk full on web-1", "ticket": "INC-1001", "minutes": 60},
        "prev_hash": sample.created.prev_hash,
        "hash": sample.created.hash,
    }
    assert response.json()["next"] is None and response.json()["previous"] is None


@pytest.mark.parametrize("persona", ["requester", "approver", "outsider"])
def test_everyone_else_is_refused(world: World, sample: SampleLogbook, persona: str) -> None:
    response = api(getattr(world, persona)).get(URL)
    assert response.status_code == 403
    assert response.json() == {"detail": "Only auditors may review the Logbook."}


def test_an_anonymous_caller_is_refused(sample: SampleLogbook) -> None:
    assert api().get(URL).status_code in (401, 403)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"account": "222222222222"}, ["staging"]),
        ({"person": "system"}, ["ready"]),
        ({"request": "11"}, ["ready", "approved", "created"]),
        ({"action": "request.created"}, ["staging", "created"]),
        ({"since": "2026-03-03T00:00:00Z"}, ["ready", "staging"]),
        ({"until": "2026-03-01T23:00:00"}, ["created"]),
        ({"q": "INC-1001"}, ["created"]),
        ({"account": "111111111111", "person": "alice"}, ["created"]),
    ],
)
def test_filters_narrow_the_list(
    world: World, sample: SampleLogbook, params: dict[str, str], expected: list[str]
) -> None:
    assert result_ids(api(world.auditor).get(URL, params)) == [getattr(sample, name).pk for name in expected]


def test_filter_by_instance(world: World, sample: SampleLogbook) -> None:
    response = api(world.auditor).get(URL, {"instance": world.db.instance_id})
    assert result_ids(response) == [sample.ready.pk]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"since": "last tuesday"}, "since", "Enter a date and time"),
        ({"until": "2026-13-45"}, "until", "Enter a date and time"),
        ({"request": "abc"}, "request", "A request id is a whole number."),
        ({"account": "1234"}, "account", "An AWS account id is exactly 12 digits."),
        ({"instance": "i-0abc; rm -rf /"}, "instance", "Enter one instance id"),
        ({"before": "x"}, "before", "Enter a whole number."),
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
        ({"limit": "5000"}, "limit", "less than or equal to 200"),
    ],
)
def test_bad_filters_are_400_with_a_message_per_field(
    world: World, params: dict[str, str], field: str, message: str
) -> None:
    response = api(world.auditor).get(URL, params)
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field]
    assert message in errors[field][0]


def test_every_bad_field_is_reported_at_once(world: World) -> None:
    response = api(world.auditor).get(URL, {"since": "soon", "request": "one", "limit": "-1"})
    assert response.status_code == 400
    assert set(response.json()) == {"since", "request", "limit"}


def test_pages_follow_next_and_previous_links_without_gaps_or_repeats(world: World) -> None:
    entries = append_many(23, account=world.prod)
    expected = sorted((entry.pk for entry in entries), reverse=True)
    client = api(world.auditor)

    pages: list[list[int]] = []
    url: str | None = f"{URL}?limit=5&account=111111111111"
    last_response = None
    while url:
        last_response = client.get(url)
        pages.append(result_ids(last_response))
        url = last_response.json()["next"]
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [pk for page in pages for pk in page] == expected

    back: list[list[int]] = []
    url = last_response.json()["previous"] if last_response else None
    while url:
        response = client.get(url)
        back.append(result_ids(response))
        url = response.json()["previous"]
    assert [pk for page in reversed(back) for pk in page] == expected[:20]


def test_links_keep_the_filters_and_the_limit(world: World) -> None:
    append_many(4, account=world.prod)
    response = api(world.auditor).get(URL, {"limit": "2", "account": "111111111111"})
    assert response.json()["next"].startswith("http://testserver/api/logbook/?account=111111111111&limit=2&before=")


@pytest.mark.parametrize("count", [3, 60])
def test_a_page_costs_a_fixed_number_of_queries(
    world: World, count: int, django_assert_num_queries: Any, time_machine: Any
) -> None:
    time_machine.move_to(datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC), tick=False)  # both pages in one minute
    entries = append_many(count, account=world.prod, request_id=9)
    client = APIClient()
    client.force_login(world.auditor)
    # The session, the user, the page; a page after a cursor also asks whether the other direction has more.
    # The person's count of pages (audit.list_limits): opened in the minute's first (an update finding
    # none, the insert in its savepoint, the count read), then counted and read.
    with django_assert_num_queries(3 + 5):
        client.get(URL, {"limit": "10"})
    with django_assert_num_queries(4 + 2):
        client.get(URL, {"limit": "10", "before": entries[-1].pk, "q": "test"})


def test_entries_python_cannot_read_are_listed_as_stored(world: World) -> None:
    """The REST list reads as the page does: the unreadable detail as its stored text, the time null."""
    if not on_postgresql():
        pytest.skip("PostgreSQL holds these values.")
    entries = append_many(3)
    make_unreadable(entries[0], HUGE_NUMBER)
    make_unreadable(entries[1], INFINITE_TIME)
    response = api(world.auditor).get(URL)
    assert result_ids(response) == [entry.pk for entry in reversed(entries)]
    rows = {row["id"]: row for row in response.json()["results"]}
    assert rows[entries[0].pk]["detail"] == '{"n": ' + "9" * 5000 + "}"
    assert rows[entries[1].pk]["created_at"] is None
