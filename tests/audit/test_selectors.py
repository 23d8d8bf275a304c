"""logbook_list and logbook_page: permission as a filter, keyset pages in both directions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from audit.forms import LogbookFilterForm
from audit.selectors import LogbookFilters, logbook_actions_seen, logbook_list, logbook_page
from tests.audit.conftest import append_many
from tests.audit.fixtures import SampleLogbook
from tests.conftest import World

pytestmark = pytest.mark.django_db

ANY = LogbookFilters()


def test_someone_who_may_not_review_gets_nothing(world: World, sample: SampleLogbook) -> None:
    assert list(logbook_list(user=world.requester, filters=ANY)) == []
    assert logbook_page(user=world.requester, filters=ANY, size=10).entries == []
    assert logbook_actions_seen(user=world.requester) == []


def test_actions_seen_are_distinct_and_sorted(world: World, sample: SampleLogbook) -> None:
    append_many(3, action="request.approved")
    assert logbook_actions_seen(user=world.auditor) == ["grant.ready", "request.approved", "request.created"]


def test_the_actions_seen_of_an_empty_logbook(world: World) -> None:
    assert logbook_actions_seen(user=world.auditor) == []


def pks(page: Any) -> list[int]:
    return [entry.pk for entry in page.entries]


def test_walking_older_then_newer_visits_every_entry_once(world: World) -> None:
    entries = append_many(17)
    newest_first = [entry.pk for entry in reversed(entries)]

    seen: list[int] = []
    page = logbook_page(user=world.auditor, filters=ANY, size=4)
    assert page.newer_cursor is None
    while True:
        seen += pks(page)
        if page.older_cursor is None:
            break
        page = logbook_page(user=world.auditor, filters=ANY, size=4, before=page.older_cursor)
    assert seen == newest_first

    back: list[int] = []
    while page.newer_cursor is not None:
        page = logbook_page(user=world.auditor, filters=ANY, size=4, after=page.newer_cursor)
        back = pks(page) + back
    assert back + newest_first[-1:] == newest_first


def test_after_the_newest_entry_there_is_an_empty_page_that_links_back(world: World) -> None:
    entries = append_many(3)
    page = logbook_page(user=world.auditor, filters=ANY, size=5, after=entries[-1].pk)
    assert page.entries == []
    assert page.newer_cursor is None
    assert page.older_cursor == entries[-1].pk + 1
    older = logbook_page(user=world.auditor, filters=ANY, size=5, before=page.older_cursor)
    assert pks(older) == [entry.pk for entry in reversed(entries)]


def test_an_after_page_is_the_entries_just_newer_than_the_cursor(world: World) -> None:
    entries = append_many(10)
    page = logbook_page(user=world.auditor, filters=ANY, size=3, after=entries[2].pk)
    assert pks(page) == [entries[5].pk, entries[4].pk, entries[3].pk]
    assert page.newer_cursor == entries[5].pk
    assert page.older_cursor == entries[3].pk


def test_before_and_after_together_means_before(world: World) -> None:
    entries = append_many(6)
    page = logbook_page(user=world.auditor, filters=ANY, size=2, before=entries[4].pk, after=entries[0].pk)
    assert pks(page) == [entries[3].pk, entries[2].pk]


def test_filters_as_params_round_trip(world: World) -> None:
    form = LogbookFilterForm(
        {
            "account": " 1111-1111-1111 ",
            "instance": "I-0ABC",
            "since": "2026-03-01T09:30",
            "q": " disk ",
            "request": "7",
        }
    )
    assert form.is_valid(), form.errors
    filters = form.to_filters()
    params = filters.as_params()
    assert params == {
        "account": "111111111111",
        "request": "7",
        "instance": "i-0abc",
        "since": "2026-03-01T09:30:00",
        "q": "disk",
    }
    again = LogbookFilterForm(params)
    assert again.is_valid()
    assert again.to_filters() == filters
    assert filters.active and not ANY.active


def test_time_bounds_past_either_end_find_nothing(world: World, sample: SampleLogbook) -> None:
    def found(**bounds: Any) -> list[int]:
        return [entry.pk for entry in logbook_list(user=world.auditor, filters=LogbookFilters(**bounds))]

    assert found(since=datetime(2027, 1, 1, tzinfo=UTC)) == []
    assert found(until=datetime(2026, 2, 1, tzinfo=UTC)) == []
    assert found(since=datetime(2026, 3, 4, 9, tzinfo=UTC)) == [sample.ready.pk]
    assert found(until=datetime(2026, 3, 1, 9, tzinfo=UTC)) == [sample.created.pk]
    assert found(since=datetime(2026, 3, 2, tzinfo=UTC), until=datetime(2026, 3, 3, 23, tzinfo=UTC)) == [
        sample.staging.pk,
        sample.approved.pk,
    ]
