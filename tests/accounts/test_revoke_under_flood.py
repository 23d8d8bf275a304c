"""Taking access away is never held back by the per-person limit on changes (accounts.api_limits,
accounts.page_limits). Someone holding a person's stolen CLI token can keep that person's count over
the limit with API writes that are all refused; the person must still be able to revoke that token
(one sign-in or all of them), complete or cancel their requests, and end sessions, on the pages and
through the API. The writes that give or widen access stay held back, and the flood still reaches
the Logbook once."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.api_limits import SCOPE
from accounts.authentication import hash_token
from accounts.models import ApiToken, User
from audit.models import LogbookEntry, ThrottleWindow
from requests_app.models import AccessRequest, RequestStatus
from terminal.models import TerminalSession
from tests.conftest import World
from tests.factories import make_active_request

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # 5 s into a minute's window
LIMIT = 3
FLOOD = LIMIT * 4


@pytest.fixture(autouse=True)
def limit(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_API_WRITES_PER_MINUTE = LIMIT
    time_machine.move_to(T0, tick=False)


def token_of(user: User, name: str = "laptop") -> tuple[ApiToken, APIClient]:
    raw = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, token_hash=hash_token(raw), expires_at=timezone.now() + timedelta(hours=12)
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return token, client


def flood(thief: APIClient, world: World) -> None:
    payload = {"account": world.prod.account_id, "instances": [world.web.instance_id], "reason": "x"}
    statuses = [thief.post("/api/requests/", payload, format="json").status_code for _ in range(FLOOD)]
    assert statuses[-1] == 429


def page(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def browser_api(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def pending_request(world: World) -> AccessRequest:
    return AccessRequest.objects.create(
        requester=world.requester, account=world.prod, reason="later", duration=timedelta(hours=1)
    )


def counted(user: User) -> int:
    return ThrottleWindow.objects.get(scope=SCOPE, key=str(user.pk)).count


def test_a_flood_from_a_stolen_token_does_not_stop_its_revocation_on_the_page(world: World) -> None:
    stolen, thief = token_of(world.requester)
    other, _ = token_of(world.requester, "desktop")
    flood(thief, world)

    owner = page(world.requester)
    one = owner.post(reverse("cli-sign-in-revoke", kwargs={"pk": stolen.pk}))
    assert one.status_code == 302
    assert not ApiToken.objects.filter(pk=stolen.pk).exists()
    assert thief.get("/api/requests/").status_code == 401  # the thief is out
    everything = owner.post(reverse("cli-sign-ins-revoke-all"))
    assert everything.status_code == 302
    assert not ApiToken.objects.filter(pk=other.pk).exists()
    assert LogbookEntry.objects.filter(action="cli.token_revoked", actor=world.requester).count() == 2


def test_a_flood_does_not_stop_the_person_ending_their_requests_on_the_page(world: World) -> None:
    live = make_active_request(world.requester, world.prod, world.web)
    waiting = pending_request(world)
    _, thief = token_of(world.requester)
    flood(thief, world)

    owner = page(world.requester)
    completed = owner.post(reverse("requests:action", kwargs={"pk": live.pk, "action": "complete"}))
    cancelled = owner.post(reverse("requests:action", kwargs={"pk": waiting.pk, "action": "cancel"}))
    assert (completed.status_code, cancelled.status_code) == (302, 302)
    live.refresh_from_db()
    waiting.refresh_from_db()
    assert live.status in (RequestStatus.COMPLETING, RequestStatus.COMPLETED)
    assert waiting.status == RequestStatus.CANCELLED
    # What gives access is still held back: extending the live access, asking for more.
    extend = owner.post(reverse("requests:action", kwargs={"pk": live.pk, "action": "extend"}), {"minutes": 30})
    assert extend.status_code == 429
    assert (
        browser_api(world.requester)
        .post("/api/requests/", {"account": world.prod.account_id, "instances": [world.web.instance_id], "reason": "y"})
        .status_code
        == 429
    )


def test_a_flood_does_not_stop_the_person_ending_access_through_the_api(world: World) -> None:
    live = make_active_request(world.requester, world.prod, world.web)
    waiting = pending_request(world)
    _, thief = token_of(world.requester)
    mine, own_cli = token_of(world.requester, "desktop")
    flood(thief, world)

    owner = browser_api(world.requester)
    assert owner.post(f"/api/requests/{live.pk}/complete/").status_code == 200
    assert owner.post(f"/api/requests/{waiting.pk}/cancel/").status_code == 200
    assert AccessRequest.objects.get(pk=waiting.pk).status == RequestStatus.CANCELLED
    # `passport auth logout` signs its own token out whatever the count.
    assert own_cli.post("/api/cli/token/revoke/").status_code == 204
    assert not ApiToken.objects.filter(pk=mine.pk).exists()


def test_a_flood_does_not_stop_an_approver_ending_a_session(world: World) -> None:
    live = make_active_request(world.requester, world.prod, world.web)
    session = TerminalSession.objects.create(grant=live.grants.get(), user=world.requester, heartbeat_at=timezone.now())
    _, thief = token_of(world.approver)
    flood(thief, world)

    approver = page(world.approver)
    url = reverse("terminal:end", args=[session.pk])
    ended = approver.post(url, {"reason": "token stolen", "scope": "session"})
    assert ended.status_code == 302
    assert LogbookEntry.objects.filter(action="session.terminated", detail__terminal_session=session.pk).count() == 1
    # Ending sessions has a count of its own: each ending of a still open session is an entry, so
    # a loop of them is held back there, not by the API's.
    more = [approver.post(url, {"reason": "again", "scope": "session"}).status_code for _ in range(LIMIT)]
    assert more == [302] * (LIMIT - 1) + [429]
    assert (
        LogbookEntry.objects.filter(action="session.terminated", detail__terminal_session=session.pk).count() == LIMIT
    )


def test_an_ending_the_person_may_not_make_is_counted_as_any_change(world: World) -> None:
    live = make_active_request(world.requester, world.prod, world.web)
    _, thief = token_of(world.observer)
    flood(thief, world)
    before = counted(world.observer)
    observer = browser_api(world.observer)
    # An Observer sees the request but may not end it: a refusal with a Logbook entry, so held back.
    assert observer.post(f"/api/requests/{live.pk}/complete/").status_code == 429
    refused = page(world.observer).post(reverse("requests:action", kwargs={"pk": live.pk, "action": "cancel"}))
    assert refused.status_code == 429
    assert counted(world.observer) == before + 2
    assert AccessRequest.objects.get(pk=live.pk).status == RequestStatus.ACTIVE


def test_ending_access_neither_counts_nor_adds_to_the_flood_s_logbook_entries(world: World) -> None:
    live = make_active_request(world.requester, world.prod, world.web)
    stolen, thief = token_of(world.requester)
    flood(thief, world)
    before = counted(world.requester)

    owner = page(world.requester)
    for _ in range(3):  # a second and third time change nothing, and write nothing
        owner.post(reverse("requests:action", kwargs={"pk": live.pk, "action": "complete"}))
        owner.post(reverse("cli-sign-in-revoke", kwargs={"pk": stolen.pk}))
        owner.post(reverse("cli-sign-ins-revoke-all"))
        browser_api(world.requester).post(f"/api/requests/{live.pk}/complete/")
    assert counted(world.requester) == before
    assert LogbookEntry.objects.filter(action="request.completing", request_id=live.pk).count() == 1
    assert LogbookEntry.objects.filter(action="api.throttled", actor=world.requester).count() == 1


def test_a_cli_token_ending_someone_elses_access_is_counted_as_any_change(world: World) -> None:
    """Only a browser sign-in ends other people's access: with a token it is a refusal on record, so
    held back as any change; the approver's browser still ends it whatever the count."""
    live = make_active_request(world.requester, world.prod, world.web)
    _, thief = token_of(world.approver)
    flood(thief, world)
    before = counted(world.approver)

    assert thief.post(f"/api/requests/{live.pk}/complete/").status_code == 429
    assert counted(world.approver) == before + 1
    assert AccessRequest.objects.get(pk=live.pk).status == RequestStatus.ACTIVE
    assert browser_api(world.approver).post(f"/api/requests/{live.pk}/complete/").status_code == 200
    assert counted(world.approver) == before + 1
