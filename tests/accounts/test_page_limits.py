"""The portal's pages that change something are held to the same per-person limit as the API
(accounts.page_limits, one count with accounts.api_limits): a loop posting forms makes no more
requests, approver mails and Logbook entries than one posting to the API could."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from tests.factories import make_active_request

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # 5 s into a minute's window
LIMIT = 3


@pytest.fixture(autouse=True)
def limit(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_API_WRITES_PER_MINUTE = LIMIT
    time_machine.move_to(T0, tick=False)


def page(world: World) -> Client:
    client = Client()
    client.force_login(world.requester)
    return client


def ask(client: Client, world: World) -> Any:
    form = {"account": world.prod.pk, "instances": [world.web.pk], "duration": 60, "reason": "patch"}
    return client.post(reverse("requests:create"), form)


def test_the_request_form_posted_in_a_loop_makes_no_more_requests_than_the_limit(world: World) -> None:
    client = page(world)
    responses = [ask(client, world) for _ in range(LIMIT * 5)]
    assert [response.status_code for response in responses] == [302] * LIMIT + [429] * (LIMIT * 4)
    assert AccessRequest.objects.filter(requester=world.requester).count() == LIMIT
    refused = responses[-1]
    assert refused["Retry-After"] == str(60 - 5 + 1)
    assert (
        f"Too many changes: you have sent more than {LIMIT} in one minute. Wait 56 seconds and try again."
        in refused.content.decode()
    )
    # One Logbook entry for the flood (then a count), as for the API; reading pages is not held back.
    assert LogbookEntry.objects.filter(action="api.throttled", actor=world.requester).count() == 1
    assert client.get(reverse("requests:list")).status_code == 200


def test_the_pages_and_the_api_share_one_count(world: World) -> None:
    api = APIClient()
    api.force_authenticate(world.requester)
    payload = {"account": world.prod.account_id, "instances": [world.web.instance_id], "reason": "deploy logs"}
    assert [api.post("/api/requests/", payload, format="json").status_code for _ in range(LIMIT)] == [201] * LIMIT
    assert ask(page(world), world).status_code == 429
    assert AccessRequest.objects.filter(requester=world.requester).count() == LIMIT


def test_a_request_action_past_the_limit_changes_nothing(world: World) -> None:
    access_request = make_active_request(world.requester, world.prod, world.web)
    client = page(world)
    for _ in range(LIMIT):
        ask(client, world)
    extend = reverse("requests:action", kwargs={"pk": access_request.pk, "action": "extend"})
    refused = client.post(extend, {"minutes": 30})
    assert refused.status_code == 429
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.ACTIVE
    assert access_request.expires_at == access_request.activated_at + access_request.duration
    # Another person is not held back.
    other = Client()
    other.force_login(world.member)
    assert other.post(reverse("cli-sign-ins-revoke-all")).status_code == 302
