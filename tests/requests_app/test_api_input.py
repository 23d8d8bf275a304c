"""What the request API does with input crafted to cost it: a cursor the API never handed out, and
a request naming more instances than one request may have, or instances the account does not have.
Each is a short 4xx, never a 500 or an answer as large as the question."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from rest_framework.test import APIClient

from accounts.models import account_id_validator
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest
from tests.conftest import World
from tests.factories import make_instance
from tests.requests_app.test_api import create_payload, make_request, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

PAGED_LISTS = ["/api/requests/", "/api/approvals/", "/api/accounts/111111111111/instances/"]


def crafted_cursor(**tokens: str) -> str:
    """A cursor as DRF encodes one (base64 of a query string), with whatever it holds."""
    return base64.b64encode(urlencode(tokens).encode()).decode()


def _list(world: World, url: str, cursor: str) -> Any:
    make_request(world)
    person = world.approver if "approvals" in url else world.requester
    return signed_in(APIClient(), person).get(url, {"cursor": cursor})


@pytest.mark.parametrize("url", PAGED_LISTS)
@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(crafted_cursor(o="0", p="\x00"), id="nul"),
        pytest.param(crafted_cursor(o="0", p="web\x00"), id="nul-inside"),
        pytest.param(crafted_cursor(o="-1", p="web"), id="negative-offset"),
        pytest.param(crafted_cursor(r="x", p="web"), id="not-a-direction"),
    ],
)
def test_a_crafted_cursor_is_a_404_on_every_paged_list(world: World, url: str, cursor: str) -> None:
    response = _list(world, url, cursor)

    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


@pytest.mark.parametrize("url", ["/api/requests/", "/api/approvals/"])
@pytest.mark.parametrize(
    "position",
    [
        pytest.param("garbage", id="words"),
        pytest.param("9" * 5000, id="huge"),
        pytest.param("2026-13-45T25:61", id="no-such-time"),
        pytest.param("1e999", id="infinity"),
        # Times Python reads that the database refuses: an offset past PostgreSQL's 15:59, a time UTC
        # moves out of years 1 to 9999 (SQLite's adapter overflowed; PostgreSQL took it as BC).
        pytest.param("0001-01-01T00:00:00+14:00", id="utc-before-year-1"),
        pytest.param("9999-12-31T23:00:00-14:00", id="utc-after-year-9999"),
    ],
)
def test_a_cursor_position_that_is_not_a_time_is_a_404_on_the_lists_in_time_order(
    world: World, url: str, position: str
) -> None:
    response = _list(world, url, crafted_cursor(o="0", p=position))

    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


@pytest.mark.parametrize(
    "position, after_the_request",
    [
        pytest.param("2999-01-01T00:00:00+15:59", True, id="offset-postgresql-takes"),
        pytest.param("2999-01-01T00:00:00-23:59", True, id="offset-past-postgresql-s-west"),
        pytest.param("2000-01-01T12:00:00+20:00", False, id="offset-past-postgresql-s-east"),
        pytest.param("2999-01-01T00:00:00", True, id="naive"),
    ],
)
def test_a_cursor_time_with_any_offset_python_reads_is_compared_in_utc(
    world: World, position: str, after_the_request: bool
) -> None:
    """Such a time goes to the database as its UTC form: PostgreSQL, refusing offsets past 15:59,
    answered a 500. The newest-first list shows what is older than the position, the approvals
    queue (oldest first) what is newer."""
    make_request(world)
    cursor = {"cursor": crafted_cursor(o="0", p=position)}

    newest_first = signed_in(APIClient(), world.requester).get("/api/requests/", cursor)
    oldest_first = signed_in(APIClient(), world.approver).get("/api/approvals/", cursor)

    assert (newest_first.status_code, oldest_first.status_code) == (200, 200)
    assert len(newest_first.json()["results"]) == (1 if after_the_request else 0)
    assert len(oldest_first.json()["results"]) == (0 if after_the_request else 1)


@pytest.mark.parametrize("url", PAGED_LISTS)
def test_a_cursor_with_a_huge_offset_is_cut_to_drf_s_limit(world: World, url: str) -> None:
    response = _list(world, url, crafted_cursor(o="9" * 40))

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_a_cursor_the_api_handed_out_still_pages(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("requests_app.apis.InstancePagination.page_size", 2)
    client = signed_in(APIClient(), world.requester)
    names: list[str] = []
    page = client.get("/api/accounts/111111111111/instances/").json()
    names += [row["name"] for row in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        names += [row["name"] for row in page["results"]]
    assert len(names) == 6 and names == sorted(names)
    # The lists in time order too: a real position is a time the field reads back.
    monkeypatch.setattr("requests_app.apis.NewestFirstPagination.page_size", 1)
    created = [make_request(world, instances=[instance]).pk for instance in (world.web, world.db)]
    first = client.get("/api/requests/").json()
    second = client.get(first["next"]).json()
    assert [first["results"][0]["id"], second["results"][0]["id"]] == created[::-1]


# --- how many instances one request may name ------------------------------------------------
def test_a_create_naming_more_instances_than_one_request_may_have_is_refused_short(world: World) -> None:
    ids = [f"i-{n:017x}" for n in range(90_000)]  # ~2 MB, within nginx's client_max_body_size
    body = json.dumps(create_payload(world, instances=ids))

    response = signed_in(APIClient(), world.requester).post("/api/requests/", body, content_type="application/json")

    assert response.status_code == 400
    assert len(response.content) < 1_000, len(response.content)
    assert f"at most {services.INSTANCES_MAX}" in response.json()["instances"][0]
    assert not AccessRequest.objects.exists()


def test_unknown_instances_are_named_up_to_ten_and_then_counted(world: World) -> None:
    unknown = [f"i-{n:017x}" for n in range(25)]
    payload = create_payload(world, instances=[world.web.instance_id, *unknown])

    response = signed_in(APIClient(), world.requester).post("/api/requests/", payload, format="json")

    assert response.status_code == 400
    [message] = response.json()["instances"]
    assert all(instance_id in message for instance_id in unknown[:10])
    assert unknown[10] not in message
    assert "and 15 more" in message


def test_a_few_unknown_instances_are_all_named(world: World) -> None:
    payload = create_payload(world, instances=["i-0000000000000dead", "i-0000000000000beef"])

    response = signed_in(APIClient(), world.requester).post("/api/requests/", payload, format="json")

    assert response.status_code == 400
    [message] = response.json()["instances"]
    assert "i-0000000000000dead, i-0000000000000beef." in message and "more" not in message


def test_someone_who_may_not_ask_is_told_so_and_not_which_instances_are_unknown(world: World) -> None:
    payload = create_payload(world, instances=[world.web.instance_id, "i-0000000000000dead"])

    response = signed_in(APIClient(), world.observer).post("/api/requests/", payload, format="json")

    assert response.status_code == 400
    assert "only Admin may request access" in response.json()["account"][0]
    assert "i-0000000000000dead" not in response.content.decode()
    # The refusal is on record as before, with the instances of the account it named.
    entry = LogbookEntry.objects.get(action="request.create_denied")
    assert entry.instance_id_list == [world.web.instance_id]


def test_the_service_refuses_more_instances_than_one_request_may_have(world: World) -> None:
    many = [make_instance(world.prod, f"fleet-{n}") for n in range(services.INSTANCES_MAX + 1)]

    with pytest.raises(RequestRuleError) as refused:
        make_request(world, instances=many)

    assert f"at most {services.INSTANCES_MAX}" in refused.value.errors["instances"][0]
    assert not AccessRequest.objects.exists()


def test_a_request_for_as_many_instances_as_allowed_has_them_all_on_record(world: World) -> None:
    # Each of its Logbook entries names every instance of the request: the bound is what the
    # entry's instance ids hold, of the longest ids AWS gives ("i-" and 17 hex digits).
    many = [make_instance(world.prod, f"fleet-{n}") for n in range(services.INSTANCES_MAX)]
    assert {len(instance.instance_id) for instance in many} == {19}

    access_request = make_request(world, instances=many)

    entry = LogbookEntry.objects.get(action="request.created", request_id=access_request.pk)
    assert sorted(entry.instance_id_list) == sorted(instance.instance_id for instance in many)


HUGE = 1_000_000


@pytest.mark.parametrize(
    ("field", "value"),
    [("account", "1" * HUGE), ("account", "<script>" * 1000), ("account", "11111111111\n"), ("account", "1111")],
)
def test_an_account_that_is_no_account_id_is_a_short_400_that_does_not_repeat_it(
    world: World, field: str, value: str
) -> None:
    body = create_payload(world) | {field: value}
    response = signed_in(APIClient(), world.requester).post("/api/requests/", body, format="json")
    assert response.status_code == 400
    assert len(response.content) < 500, len(response.content)
    assert "<script>" not in response.content.decode()
    assert response.json()[field] == [account_id_validator.message]
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize("name", ["status", "scope"])
def test_a_list_filter_outside_its_choices_is_a_short_400_naming_the_choices(world: World, name: str) -> None:
    response = signed_in(APIClient(), world.requester).get("/api/requests/", {name: "x" * 100_000})
    assert response.status_code == 400
    assert len(response.content) < 500, len(response.content)
    assert "xxxx" not in response.content.decode()
    assert "Choose one of" in response.json()[name][0]


def test_a_session_document_outside_its_choices_is_a_short_400(world: World) -> None:
    from tests.requests_app.test_api import make_active

    request = make_active(make_request(world))
    url = f"/api/requests/{request.pk}/grants/{world.web.instance_id}/session/"
    response = signed_in(APIClient(), world.requester).post(url, {"document": "x" * HUGE}, format="json")
    assert response.status_code == 400
    assert len(response.content) < 500, len(response.content)
    assert "xxxx" not in response.content.decode()
