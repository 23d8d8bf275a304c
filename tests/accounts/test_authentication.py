"""The CLI's bearer token in the API (accounts.authentication): it may not decide on other people's
access or sync an inventory (SessionOnly: a 403 that says to use the portal), and every Logbook
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
