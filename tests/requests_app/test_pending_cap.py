"""One person holds at most ``PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON`` requests waiting for
approval, under all of their users: each one mails every approver of its account, so a loop of
requests (a script, well within the writes-a-minute limit) would flood the approvers' mail. Past
the cap a new request is refused, with how many wait, on the form, in the API and in the CLI, and
the refusal reaches the Logbook once and then as a count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApprovalPolicy, User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from requests_app.notifications import notification_send
from tests.conftest import World
from tests.factories import make_membership
from workers import tasks

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
CAP = 10
REFUSAL = (
    "You already have 10 requests waiting for approval; at most 10 may wait at once. "
    "Cancel one, or wait for a decision on one, then ask again."
)


@pytest.fixture(autouse=True)
def cap(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.PASSPORT_IAM_CHECK = False
    settings.PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON = CAP
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr(
        tasks.send_notification, "delay", lambda kind, request_id: notification_send(kind=kind, request_id=request_id)
    )
    monkeypatch.setattr(tasks.begin_provisioning, "delay", lambda request_id: None)


def ask(world: World, capture: Any, requester: User | None = None, number: int = 0) -> AccessRequest:
    with capture(execute=True):
        return services.access_request_create(
            requester=requester or world.requester,
            account=world.prod,
            instances=[world.web, world.db],
            reason=f"same thing again {number}",
        )


def pending_of(*users: User) -> int:
    return AccessRequest.objects.filter(requester__in=users, status=RequestStatus.PENDING).count()


def test_past_the_cap_a_request_is_refused_and_mails_no_approver(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    refused: list[RequestRuleError] = []
    for number in range(60):
        try:
            ask(world, django_capture_on_commit_callbacks, number=number)
        except RequestRuleError as error:
            refused.append(error)
    assert pending_of(world.requester) == CAP
    assert len(refused) == 50
    assert all(error.errors == {"__all__": [REFUSAL]} for error in refused)
    assert len([m for m in mail.outbox if m.to == ["carol@example.test"]]) == CAP
    # The same refusal again and again is one entry, then a count (audit.refusals).
    denied = LogbookEntry.objects.get(action="request.create_denied")
    assert denied.actor == world.requester
    assert denied.detail["denied"] == {"__all__": [REFUSAL]}
    assert denied.instance_id_list == sorted([world.web.instance_id, world.db.instance_id])
    # One decided makes room for one more.
    oldest = AccessRequest.objects.filter(requester=world.requester).earliest("pk")
    services.access_request_cancel(access_request=oldest, actor=world.requester)
    ask(world, django_capture_on_commit_callbacks, number=60)
    assert pending_of(world.requester) == CAP


def test_the_cap_counts_every_user_of_the_person_and_no_one_else(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    # A break-glass account of the same person (the same email), beside their usual one.
    local = User.objects.create_user(username="alice-local", email=world.requester.email, password="pw")
    make_membership(local, world.prod, "admin")
    for number in range(6):
        ask(world, django_capture_on_commit_callbacks, number=number)
    for number in range(4):
        ask(world, django_capture_on_commit_callbacks, requester=local, number=number)
    for requester in (world.requester, local):
        with pytest.raises(RequestRuleError) as refused:
            ask(world, django_capture_on_commit_callbacks, requester=requester, number=99)
        assert refused.value.errors == {"__all__": [REFUSAL]}
    assert pending_of(world.requester, local) == CAP
    # Another person is not held back.
    assert ask(world, django_capture_on_commit_callbacks, requester=world.member).status == RequestStatus.PENDING


def test_a_request_approved_by_policy_neither_waits_nor_is_refused(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    for number in range(CAP):
        ask(world, django_capture_on_commit_callbacks, number=number)
    ApprovalPolicy.objects.create(account=world.staging, auto_approve=True, auto_approve_requires_ticket=False)
    world.requester.identity_store = User.IdentityStore.INTERNAL
    world.requester.save(update_fields=["identity_store"])
    with django_capture_on_commit_callbacks(execute=True):
        approved = services.access_request_create(
            requester=world.requester,
            account=world.staging,
            instances=[world.stage_web],
            reason="no approver needed",
            ticket="INC-1",
        )
    assert approved.status == RequestStatus.APPROVED
    assert pending_of(world.requester) == CAP


def test_the_form_and_the_api_say_how_many_wait(world: World, django_capture_on_commit_callbacks: Any) -> None:
    for number in range(CAP):
        ask(world, django_capture_on_commit_callbacks, number=number)
    page = Client()
    page.force_login(world.requester)
    response = page.post(
        reverse("requests:create"),
        {"account": world.prod.pk, "instances": [world.web.pk], "duration": 60, "reason": "one more"},
    )
    assert response.status_code == 200
    assert REFUSAL in response.content.decode()
    api = APIClient()
    api.force_authenticate(world.requester)
    payload = {"account": world.prod.account_id, "instances": [world.web.instance_id], "reason": "one more"}
    answer = api.post("/api/requests/", payload, format="json")
    assert answer.status_code == 400
    assert answer.json() == {"detail": REFUSAL}
    assert pending_of(world.requester) == CAP


def test_a_cap_below_one_stops_the_portal_at_start() -> None:
    environment = {**os.environ, "PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON": "0"}
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "passport_portal.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON must be at least 1." in started.stderr
