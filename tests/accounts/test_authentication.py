"""The CLI's bearer token in the API (accounts.authentication): it may not decide on other people's
access or sync an inventory (SessionOnly: a 403 that says to use the portal), it ends (cancels,
completes) and extends only its own person's access, whatever else a browser sign-in of theirs may
end (an approver's, a site admin's: a 403, on record), and every Logbook
entry written on a request it authenticated names it by id (audit.origin), never by its secret;
the next request on the same thread carries nothing of it."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.authentication import SESSION_ONLY_MESSAGE, hash_token
from accounts.models import ApiToken, User
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from tests.factories import make_active_request, make_user
from tests.fakes.fleet import FakeFleet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def token_for(user: User) -> tuple[ApiToken, str]:
    raw = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name="laptop", token_hash=hash_token(raw), expires_at=timezone.now() + timedelta(hours=12)
    )
    return token, raw


def cli(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def pending(world: World) -> AccessRequest:
    return services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy logs"
    )


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_with_a_cli_token_is_refused_and_says_to_use_the_portal(world: World, decision: str) -> None:
    access_request = pending(world)
    _, raw = token_for(world.approver)
    response = cli(raw).post(f"/api/requests/{access_request.pk}/{decision}/", {"note": "fine"}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": SESSION_ONLY_MESSAGE}
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    # The same approver, signed in with a browser, decides.
    signed_in = browser(world.approver)
    decided = signed_in.post(
        f"/api/requests/{access_request.pk}/{decision}/", {"note": "fine"}, content_type="application/json"
    )
    assert decided.status_code == 200, decided.content


def test_an_inventory_sync_with_a_cli_token_is_refused_before_the_cloud_is_asked(
    world: World, fake_fleet: FakeFleet
) -> None:
    _, raw = token_for(world.approver)
    response = cli(raw).post(f"/api/accounts/{world.prod.account_id}/sync/")
    assert response.status_code == 403
    assert response.json() == {"detail": SESSION_ONLY_MESSAGE}
    assert fake_fleet.describes == []
    assert not LogbookEntry.objects.filter(action__startswith="inventory.").exists()


def site_admin() -> User:
    return make_user("root", is_superuser=True, is_staff=True)


def someone_who_ends_others_access(world: World, who: str) -> User:
    """An approver of the account, or a site admin: with a browser sign-in, either may end anyone's access."""
    return world.approver if who == "approver" else site_admin()


# What a CLI token is told when it tries to end someone else's access (the words the portal uses).
OWN_ACCESS_ONLY = "ends only your own access"


@pytest.mark.parametrize("who", ["approver", "site_admin"])
def test_a_cli_token_cannot_end_someone_elses_access(world: World, who: str) -> None:
    active = make_active_request(world.requester, world.prod, world.web)
    person = someone_who_ends_others_access(world, who)
    token, raw = token_for(person)

    response = cli(raw).post(f"/api/requests/{active.pk}/complete/")

    assert response.status_code == 403, response.content
    assert OWN_ACCESS_ONLY in response.json()["detail"] and "browser" in response.json()["detail"]
    active.refresh_from_db()
    assert active.status == RequestStatus.ACTIVE
    denied = LogbookEntry.objects.get(action="request.complete_denied", request_id=active.pk)
    assert denied.actor == person and denied.detail["cli_token"] == token.pk
    # The same person, signed in with a browser, may.
    ended = browser(person).post(f"/api/requests/{active.pk}/complete/")
    assert ended.status_code == 200, ended.content
    active.refresh_from_db()
    assert active.status in (RequestStatus.COMPLETING, RequestStatus.COMPLETED)


def test_a_site_admins_cli_token_cannot_cancel_someone_elses_request(world: World) -> None:
    waiting = pending(world)
    admin = site_admin()
    token, raw = token_for(admin)

    response = cli(raw).post(f"/api/requests/{waiting.pk}/cancel/")

    assert response.status_code == 403, response.content
    assert OWN_ACCESS_ONLY in response.json()["detail"]
    waiting.refresh_from_db()
    assert waiting.status == RequestStatus.PENDING
    denied = LogbookEntry.objects.get(action="request.cancel_denied", request_id=waiting.pk)
    assert denied.actor == admin and denied.detail["cli_token"] == token.pk
    assert browser(admin).post(f"/api/requests/{waiting.pk}/cancel/").status_code == 200
    waiting.refresh_from_db()
    assert waiting.status == RequestStatus.CANCELLED


def test_a_cli_token_ends_its_own_persons_access(world: World) -> None:
    active = make_active_request(world.requester, world.prod, world.web)
    _, raw = token_for(world.requester)
    response = cli(raw).post(f"/api/requests/{active.pk}/complete/")
    assert response.status_code == 200, response.content
    active.refresh_from_db()
    assert active.status in (RequestStatus.COMPLETING, RequestStatus.COMPLETED)


@pytest.mark.parametrize("who", ["approver", "site_admin"])
def test_a_cli_token_cannot_extend_someone_elses_access(world: World, who: str) -> None:
    active = make_active_request(world.requester, world.prod, world.web)
    active.refresh_from_db()
    _, raw = token_for(someone_who_ends_others_access(world, who))
    response = cli(raw).post(f"/api/requests/{active.pk}/extend/", {"minutes": 30}, format="json")
    assert response.status_code == 403, response.content
    assert AccessRequest.objects.get(pk=active.pk).expires_at == active.expires_at


@pytest.mark.parametrize("who", ["approver", "site_admin"])
def test_a_cli_token_is_offered_nothing_on_someone_elses_request(world: World, who: str) -> None:
    """The ``actions`` the API lists are what the caller may do: with a token, nothing of another person's
    request, where a browser sign-in of the same person is offered to decide, cancel or complete it."""
    waiting = pending(world)
    active = make_active_request(world.requester, world.prod, world.db)
    person = someone_who_ends_others_access(world, who)
    _, raw = token_for(person)
    token, signed_in = cli(raw), browser(person)

    assert token.get(f"/api/requests/{waiting.pk}/").json()["actions"] == []
    assert token.get(f"/api/requests/{active.pk}/").json()["actions"] == []
    listed = token.get("/api/requests/", {"scope": "all"}).json()["results"]
    assert {row["id"]: row["actions"] for row in listed} == {waiting.pk: [], active.pk: []}
    assert [row["actions"] for row in token.get("/api/approvals/").json()["results"]] == [[]]

    assert signed_in.get(f"/api/requests/{waiting.pk}/").json()["actions"] == (
        ["approve", "reject", "cancel"] if who == "site_admin" else ["approve", "reject"]
    )
    assert signed_in.get(f"/api/requests/{active.pk}/").json()["actions"] == ["complete"]
    # The requester's own token is offered what is theirs to do.
    _, own = token_for(world.requester)
    assert cli(own).get(f"/api/requests/{waiting.pk}/").json()["actions"] == ["cancel"]
    assert cli(own).get(f"/api/requests/{active.pk}/").json()["actions"] == ["extend", "complete"]


def test_what_the_cli_does_it_still_may_and_every_entry_names_the_token(world: World) -> None:
    token, raw = token_for(world.requester)
    client = cli(raw)
    before = LogbookEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    payload = {"account": world.prod.account_id, "instances": [world.web.instance_id], "reason": "deploy logs"}
    created = client.post("/api/requests/", payload, format="json")
    assert created.status_code == 201, created.content
    request_id = created.json()["id"]
    assert client.post(f"/api/requests/{request_id}/cancel/").status_code == 200
    refused = client.post("/api/requests/", {**payload, "instances": [world.legacy.instance_id]}, format="json")
    assert refused.status_code == 400
    entries = list(LogbookEntry.objects.filter(pk__gt=before).order_by("pk"))
    assert {entry.action for entry in entries} >= {"request.created", "request.cancelled", "request.create_denied"}
    for entry in entries:
        assert entry.detail["cli_token"] == token.pk, (entry.action, entry.detail)
        assert raw not in json.dumps(entry.detail)
    # The token's id is part of what each entry's hash covers, and the chain holds.
    assert logbook_verify().intact


def test_the_next_request_on_the_thread_carries_nothing_of_the_token(world: World) -> None:
    _, raw = token_for(world.requester)
    payload = {"account": world.prod.account_id, "instances": [world.web.instance_id], "reason": "deploy logs"}
    assert cli(raw).post("/api/requests/", payload, format="json").status_code == 201
    in_browser = browser(world.requester).post(
        "/api/requests/", {**payload, "instances": [world.db.instance_id]}, content_type="application/json"
    )
    assert in_browser.status_code == 201
    entry = LogbookEntry.objects.get(action="request.created", request_id=in_browser.json()["id"])
    assert "cli_token" not in entry.detail
    # Nor does work done outside any request (a worker, a command) on this thread.
    services.access_request_cancel(
        access_request=AccessRequest.objects.get(pk=in_browser.json()["id"]), actor=world.requester
    )
    assert "cli_token" not in LogbookEntry.objects.get(action="request.cancelled").detail
