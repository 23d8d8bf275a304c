"""A signed-in person's changes through the API are limited per minute (accounts.api_limits): past
the limit a change is answered 429 with Retry-After and a message that says what to do; reads,
and other people, are not held back; browser and CLI token share one count; the Logbook hears
of the flood once, with a count."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.authentication import hash_token
from accounts.models import ApiToken, User
from audit.models import LogbookEntry
from audit.refusals import logbook_refusals_flush
from tests.conftest import World

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # 5 s into a minute's window (and a refusal window)
LIMIT = 3


@pytest.fixture(autouse=True)
def limit(settings: Any, time_machine: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PASSPORT_API_WRITES_PER_MINUTE = LIMIT
    time_machine.move_to(T0, tick=False)


def browser(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def cli(user: User) -> APIClient:
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=user, name="laptop", token_hash=hash_token(raw), expires_at=timezone.now() + timedelta(hours=12)
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def ask(client: APIClient, world: World) -> Any:
    payload = {"account": world.prod.account_id, "instances": [world.web.instance_id], "reason": "deploy logs"}
    return client.post("/api/requests/", payload, format="json")


def test_past_the_limit_a_change_is_answered_429_with_retry_after_and_what_to_do(world: World) -> None:
    client = browser(world.observer)
    assert [ask(client, world).status_code for _ in range(LIMIT)] == [400] * LIMIT  # an Observer may not ask
    refused = ask(client, world)
    assert refused.status_code == 429
    assert refused["Retry-After"] == str(60 - 5 + 1)
    assert refused.json() == {
        "detail": f"Too many changes: you have sent more than {LIMIT} in one minute. Wait 56 seconds and try again."
    }
    # Reads are not counted, nor is another person held back.
    assert client.get("/api/requests/").status_code == 200
    assert ask(browser(world.requester), world).status_code == 201


def test_the_count_starts_again_in_the_next_minute(world: World, time_machine: Any) -> None:
    client = browser(world.observer)
    for _ in range(LIMIT):
        ask(client, world)
    assert ask(client, world).status_code == 429
    time_machine.move_to(T0 + timedelta(seconds=55), tick=False)
    assert ask(client, world).status_code == 400


def test_the_browser_and_the_cli_token_of_one_person_share_the_count(world: World) -> None:
    token_client, session_client = cli(world.observer), browser(world.observer)
    assert ask(token_client, world).status_code == 400
    assert ask(session_client, world).status_code == 400
    assert ask(token_client, world).status_code == 400
    assert ask(session_client, world).status_code == 429
    assert ask(token_client, world).status_code == 429


def test_a_flood_past_the_limit_is_one_logbook_entry_and_a_count(world: World, time_machine: Any) -> None:
    client = browser(world.observer)
    codes = [ask(client, world).status_code for _ in range(40)]
    assert codes == [400] * LIMIT + [429] * (40 - LIMIT)
    throttled = LogbookEntry.objects.filter(action="api.throttled")
    entry = throttled.get()
    assert entry.actor == world.observer
    assert entry.detail["limit"] == LIMIT and entry.detail["source"] == f"user:{world.observer.pk}"
    # Once the refusal window has closed, the summary counts every one of them.
    time_machine.move_to(T0 + timedelta(minutes=6), tick=False)
    assert logbook_refusals_flush() == 2  # this, and the three refused asks (request.create_denied)
    summary = throttled.get(detail__summary=True)
    assert summary.detail["counts"] == [
        {"source": f"user:{world.observer.pk}", "reason": "writes_per_minute", "count": 40 - LIMIT}
    ]
