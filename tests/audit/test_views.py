"""The review page at /logbook/: who may see it, each filter, keyset pages, htmx, query counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import LogbookEntry
from tests.audit.conftest import HUGE_NUMBER, INFINITE_TIME, append_many, make_unreadable, on_postgresql, signed_in
from tests.audit.fixtures import SampleLogbook
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db

URL = "/logbook/"


def ids(response: HttpResponse) -> list[int]:
    return [entry.pk for entry in response.context["page"].entries]  # type: ignore[attr-defined]


def shown(client: Client, **params: Any) -> list[int]:
    response = client.get(URL, params)
    assert response.status_code == 200
    return ids(response)


# --- Who may see it --------------------------------------------------------------------


def test_an_auditor_sees_the_logbook(world: World, sample: SampleLogbook) -> None:
    response = signed_in(world.auditor).get(URL)
    assert response.status_code == 200
    assert ids(response) == [entry.pk for entry in sample.all]
    assert response.context["nav"] == "logbook"


def test_a_superuser_sees_the_logbook(world: World, sample: SampleLogbook) -> None:
    admin = make_user("root", is_superuser=True, is_staff=True)
    assert signed_in(admin).get(URL).status_code == 200


@pytest.mark.parametrize("persona", ["requester", "approver", "outsider", "observer"])
def test_everyone_else_is_refused(world: World, sample: SampleLogbook, persona: str) -> None:
    response = signed_in(getattr(world, persona)).get(URL)
    assert response.status_code == 403
    assert b"Disk full" not in response.content


def test_a_stranger_is_sent_to_sign_in(db: None) -> None:
    response = Client().get(URL)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


# --- Filters ---------------------------------------------------------------------------


def test_filter_by_account(world: World, sample: SampleLogbook) -> None:
    client = signed_in(world.auditor)
    assert shown(client, account="222222222222") == [sample.staging.pk]
    assert shown(client, account="1111-1111-1111") == [sample.ready.pk, sample.approved.pk, sample.created.pk]


def test_filter_by_person(world: World, sample: SampleLogbook) -> None:
    client = signed_in(world.auditor)
    assert shown(client, person="carol") == [sample.approved.pk]
    assert shown(client, person="alice") == [sample.staging.pk, sample.created.pk]
    assert shown(client, person="system") == [sample.ready.pk]


def test_filter_by_request(world: World, sample: SampleLogbook) -> None:
    client = signed_in(world.auditor)
    assert shown(client, request="12") == [sample.staging.pk]
    assert shown(client, request="11") == [sample.ready.pk, sample.approved.pk, sample.created.pk]


def test_filter_by_instance_matches_whole_ids_only(world: World, sample: SampleLogbook) -> None:
    client = signed_in(world.auditor)
    assert shown(client, instance=world.web.instance_id) == [sample.ready.pk, sample.created.pk]
    assert shown(client, instance=world.db.instance_id.upper()) == [sample.ready.pk]
    assert shown(client, instance=world.web.instance_id[:-3]) == []


def test_filter_by_action(world: World, sample: SampleLogbook) -> None:
    client = signed_in(world.auditor)
    assert shown(client, action="request.created") == [sample.staging.pk, sample.created.pk]
    assert shown(client, action="request.create") == []


def test_filter_by_time_range(world: World, sample: SampleLogbook) -> None:
    client = signed_in(world.auditor)
    assert shown(client, since="2026-03-02T00:00") == [sample.ready.pk, sample.staging.pk, sample.approved.pk]
    assert shown(client, until="2026-03-02T10:00") == [sample.approved.pk, sample.created.pk]
    assert shown(client, since="2026-03-02T00:00", until="2026-03-03T12:00") == [sample.staging.pk, sample.approved.pk]


def test_text_search_covers_action_actor_and_detail(world: World, sample: SampleLogbook) -> None:
    client = signed_in(world.auditor)
    assert shown(client, q="nginx") == [sample.staging.pk]
    assert shown(client, q="DISK FULL") == [sample.created.pk]
    assert shown(client, q="INC-1001") == [sample.created.pk]
    assert shown(client, q="carol") == [sample.approved.pk]
    assert shown(client, q="grant.rea") == [sample.ready.pk]


def test_text_search_takes_wildcards_literally(world: World, sample: SampleLogbook) -> None:
    client = signed_in(world.auditor)
    assert shown(client, q="%") == []
    assert shown(client, q="Disk_full") == []


def test_filters_combine(world: World, sample: SampleLogbook) -> None:
    client = signed_in(world.auditor)
    assert shown(client, account="111111111111", person="alice", q="disk") == [sample.created.pk]
    assert shown(client, account="222222222222", action="request.approved") == []


def test_invalid_filters_are_explained_and_nothing_is_listed(world: World, sample: SampleLogbook) -> None:
    response = signed_in(world.auditor).get(URL, {"since": "yesterday", "request": "abc", "account": "12"})
    assert response.status_code == 200
    assert "page" not in response.context
    content = response.content.decode()
    assert "Check the filters." in content
    assert "A request id is a whole number." in content
    assert "An AWS account id is exactly 12 digits." in content
    assert "Enter a date and time" in content


def test_to_before_from_is_refused(world: World, sample: SampleLogbook) -> None:
    response = signed_in(world.auditor).get(URL, {"since": "2026-03-04T00:00", "until": "2026-03-01T00:00"})
    assert "&#x27;To&#x27; is before &#x27;From&#x27;." in response.content.decode()


# --- What a row shows ------------------------------------------------------------------


def test_a_row_shows_time_actor_action_account_request_instances_and_detail(
    world: World, sample: SampleLogbook
) -> None:
    content = signed_in(world.auditor).get(URL).content.decode()
    assert '<time datetime="2026-03-01T09:00:00+00:00">2026-03-01 <strong>09:00:00</strong></time>' in content
    assert 'href="/requests/11/"' in content
    assert world.web.instance_id in content and world.db.instance_id in content
    assert "Acme Staging" in content
    assert '<span class="chip-key">reason</span> Disk full on web-1' in content
    assert '<span class="badge badge-system">system</span>' in content
    assert "badge badge-approved" in content


def test_a_long_detail_folds_into_a_disclosure(world: World) -> None:
    append_many(1, detail={f"key{n}": "x" * 100 for n in range(6)})
    content = signed_in(world.auditor).get(URL).content.decode()
    assert "<details><summary>All detail</summary>" in content
    assert "x" * 59 + "…" in content


def test_detail_is_escaped(world: World) -> None:
    append_many(1, detail={"reason": "<script>alert(1)</script>"})
    content = signed_in(world.auditor).get(URL).content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;" in content


def test_invisible_and_reordering_characters_in_detail_are_shown_as_escapes(world: World) -> None:
    path = "./evil;$(id)\x1b[31m\u202egpj.exe\x9b"
    append_many(1, action="file.transferred", detail={"path": path, "extra": {"note": "a\u2028b\x7f"}})
    content = signed_in(world.auditor).get(URL).content.decode()
    for raw in ("\x1b", "\u202e", "\x9b", "\u2028", "\x7f"):
        assert raw not in content
    assert "./evil;$(id)\\x1b[31m\\u202egpj.exe\\x9b" in content  # the chip
    assert "a\\u2028b\\u007f" in content  # a nested value: its JSON, escapes included


# --- Keyset pages ----------------------------------------------------------------------


def walk(client: Client, start: str, direction: str) -> list[list[int]]:
    pages, url = [], start
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append(ids(response))
        url = response.context[direction]
        assert len(pages) < 50
    return pages


def test_older_and_newer_pages_cover_every_entry_once(world: World, small_pages: int) -> None:
    entries = append_many(23)
    expected = sorted((entry.pk for entry in entries), reverse=True)
    client = signed_in(world.auditor)

    older = walk(client, URL, "older_url")
    assert [len(page) for page in older] == [5, 5, 5, 5, 3]
    assert [pk for page in older for pk in page] == expected

    last_page_url = client.get(URL, {"before": older[-2][-1]})
    assert ids(last_page_url) == older[-1]
    newer = walk(client, last_page_url.context["newer_url"], "newer_url")
    assert [pk for page in reversed(newer) for pk in page] + older[-1] == expected
    assert all(len(page) == small_pages for page in newer)


def test_pages_of_a_filtered_view_stay_filtered(world: World, small_pages: int) -> None:
    prod = append_many(12, account=world.prod)
    append_many(12, account=world.staging)
    older = walk(signed_in(world.auditor), f"{URL}?account=111111111111", "older_url")
    assert [pk for page in older for pk in page] == sorted((entry.pk for entry in prod), reverse=True)


def test_entries_appended_meanwhile_neither_repeat_nor_shift_pages(world: World, small_pages: int) -> None:
    append_many(12)
    client = signed_in(world.auditor)
    first = client.get(URL)
    append_many(3, action="later.event")
    second = client.get(first.context["older_url"])
    assert ids(second) == [pk - 5 for pk in ids(first)]


def test_the_newest_page_has_no_newer_link_and_the_oldest_no_older(world: World, small_pages: int) -> None:
    entries = append_many(5)
    response = signed_in(world.auditor).get(URL)
    assert response.context["newer_url"] == "" and response.context["older_url"] == ""
    past_the_end = signed_in(world.auditor).get(URL, {"before": entries[0].pk})
    assert ids(past_the_end) == []
    assert past_the_end.context["older_url"] == ""
    assert past_the_end.context["newer_url"] == f"{URL}?after={entries[0].pk - 1}"


def test_pager_links_work_without_javascript(world: World, small_pages: int) -> None:
    append_many(7)
    content = signed_in(world.auditor).get(URL, {"person": "system"}).content.decode()
    assert 'method="get" action="/logbook/"' in content
    older = LogbookEntry.objects.order_by("-id")[4].pk
    assert f'href="/logbook/?person=system&amp;before={older}"' in content


def test_a_deep_page_is_cut_by_id_not_offset(world: World, small_pages: int) -> None:
    entries = append_many(30)
    client = signed_in(world.auditor)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, {"before": entries[3].pk})
    assert ids(response) == [entry.pk for entry in reversed(entries[:3])]
    page_sql = [query["sql"] for query in queries if "audit_logbookentry" in query["sql"]]
    assert page_sql and not any("OFFSET" in sql.upper() for sql in page_sql)


# --- htmx ------------------------------------------------------------------------------


def test_htmx_gets_only_the_results(world: World, sample: SampleLogbook) -> None:
    response = signed_in(world.auditor).get(URL, {"account": "222222222222"}, HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert "<html" not in content and "<form" not in content
    assert '<table class="logbook">' in content
    assert ids(response) == [sample.staging.pk]
    assert "HX-Request" in response["Vary"]


def test_a_history_restore_gets_the_whole_page(world: World, sample: SampleLogbook) -> None:
    response = signed_in(world.auditor).get(URL, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in response.content.decode()


def test_the_form_refreshes_the_results_with_htmx(world: World, sample: SampleLogbook) -> None:
    content = signed_in(world.auditor).get(URL).content.decode()
    assert 'hx-get="/logbook/" hx-target="#logbook-results" hx-push-url="true"' in content
    assert '<datalist id="logbook-actions"><option value="grant.ready"></option>' in content
    assert '<option value="request.approved"></option><option value="request.created"></option>' in content


# --- Query counts ----------------------------------------------------------------------
# session, user, the navigation's approver check, account names, actions seen, the page.
FIRST_PAGE_QUERIES = 6
# The whole page's nav also asks whether the person may ask for access ("New request").
NAV_REQUEST_QUERY = 1
# The whole page (not an htmx refresh) also reads the last checkpoint, the last verification entry
# of the Logbook and the last verification recorded locally.
ANCHOR_QUERIES = 3
# The person's count of Logbook pages (audit.list_limits), shared with the REST list: the minute's
# first page opens it (an update finding none, the insert in its savepoint, the count read); a later
# page in that minute counts and reads it.
OPEN_COUNT_QUERIES = 5
COUNT_QUERIES = 2


@pytest.fixture
def one_minute(time_machine: Any) -> None:
    """Every page of a test in one minute's count, so which queries the count costs is known."""
    time_machine.move_to(datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC), tick=False)


@pytest.mark.parametrize("count", [3, 40])
def test_the_first_page_costs_a_fixed_number_of_queries(
    world: World, small_pages: int, count: int, django_assert_num_queries: Any, one_minute: None
) -> None:
    append_many(count, account=world.prod, instance_ids=["i-0abc"], request_id=5)
    client = signed_in(world.auditor)
    # Entries that name instances add one query for the page: the instances' names.
    with django_assert_num_queries(FIRST_PAGE_QUERIES + ANCHOR_QUERIES + NAV_REQUEST_QUERY + 1 + OPEN_COUNT_QUERIES):
        client.get(URL)


@pytest.mark.parametrize("count", [12, 40])
def test_a_later_page_adds_one_query(
    world: World, small_pages: int, count: int, django_assert_num_queries: Any, one_minute: None
) -> None:
    entries = append_many(count, account=world.prod)
    client = signed_in(world.auditor)
    later_page = FIRST_PAGE_QUERIES + ANCHOR_QUERIES + NAV_REQUEST_QUERY + 1
    with django_assert_num_queries(later_page + OPEN_COUNT_QUERIES):
        client.get(URL, {"before": entries[-6].pk, "q": "test", "account": "111111111111"})
    with django_assert_num_queries(later_page + COUNT_QUERIES):
        client.get(URL, {"after": entries[2].pk})


def test_an_htmx_refresh_skips_the_actions_query(
    world: World, small_pages: int, django_assert_num_queries: Any, one_minute: None
) -> None:
    append_many(12)
    client = signed_in(world.auditor)
    with django_assert_num_queries(FIRST_PAGE_QUERIES - 1 + OPEN_COUNT_QUERIES):
        client.get(URL, HTTP_HX_REQUEST="true")


def test_the_whole_detail_shows_invisible_characters_as_escapes_and_keeps_its_layout() -> None:
    from audit.templatetags.logbook import pretty_json

    shown = pretty_json({"path": "x\u202ey\x9b", "nested": {"a": "\u2028"}})
    assert shown.splitlines()[0] == "{" and len(shown.splitlines()) == 6
    assert '"path": "x\\u202ey\\x9b"' in shown and '"a": "\\u2028"' in shown


def test_entries_python_cannot_read_are_shown_marked_not_a_500(world: World) -> None:
    """A database writer's detail (a 5000-digit number) or time ('infinity') that Python cannot read:
    the page still lists every entry, each such field as its stored text, marked unreadable."""
    if not on_postgresql():
        pytest.skip("PostgreSQL holds these values.")
    entries = append_many(4)
    make_unreadable(entries[1], HUGE_NUMBER)
    make_unreadable(entries[2], INFINITE_TIME)
    client = signed_in(world.auditor)
    response = client.get(URL)
    assert response.status_code == 200
    assert ids(response) == [entry.pk for entry in reversed(entries)]
    content = response.content.decode()
    assert content.count('data-testid="logbook-unreadable"') == 2
    assert "<code>infinity</code>" in content
    assert "{&quot;n&quot;: 9999999999" in content and "9" * 5000 not in content  # shortened
    shown_entries = {entry.pk: entry for entry in response.context["page"].entries}  # type: ignore[index]
    assert shown_entries[entries[1].pk].unreadable == {"detail": '{"n": ' + "9" * 5000 + "}"}
    assert shown_entries[entries[2].pk].unreadable == {"created_at": "infinity"}
    assert shown_entries[entries[3].pk].unreadable == {} and shown_entries[entries[3].pk].detail == {"n": 3}
    # The htmx results, a filtered page and a text search read the same way.
    assert client.get(URL, {"action": "test.event"}, headers={"HX-Request": "true"}).status_code == 200
    assert client.get(URL, {"q": "999"}).status_code == 200
