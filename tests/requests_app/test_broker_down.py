"""Approving and ending while the broker (Redis) is down: the change stands, the answer says the
work is queued (never a 500), and the resume sweep hands the work out once the broker is back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from passport_portal.celery import app
from requests_app.apis.common import QUEUED_NOTE
from requests_app.models import AccessRequest, GrantStatus, RequestStatus
from requests_app.views.actions import QUEUED_MESSAGE
from tests.conftest import PROVISIONING_TASKS, World
from tests.requests_app.test_api import make_active, make_request, signed_in
from workers import tasks

# Real commits: the on-commit send runs when the service's transaction commits, inside the
# request, as in production (captured callbacks would only run after the answer).
pytestmark = pytest.mark.django_db(transaction=True)

CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every connect is refused


@pytest.fixture(autouse=True)
def committed(transactional_db: None) -> Iterator[None]:
    yield
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _broker_use(url: str) -> None:
    app.conf.broker_url = url
    # Drop the pooled connections, so the next send connects to ``url``.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_down() -> Iterator[None]:
    original = app.conf.broker_url
    _broker_use(CLOSED_PORT_BROKER)
    try:
        yield
    finally:
        _broker_use(original)


def _sweep_with_broker_back(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[tuple[str, int]]:
    """The broker is back: run the resume sweep once, recording what it hands to the workers."""
    settings.PASSPORT_SWEEP_GRACE_SECONDS = 0
    sent: list[tuple[str, int]] = []
    for name in PROVISIONING_TASKS:
        monkeypatch.setattr(getattr(tasks, name), "delay", lambda object_id, _n=name: sent.append((_n, object_id)))
    tasks.resume_stuck_grants()
    return sent


def test_approving_on_the_web_page_with_the_broker_down_saves_and_says_queued(
    world: World,
    broker_down: None,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    access_request = make_request(world)
    client = Client()
    client.force_login(world.approver)

    response = client.post(f"/requests/{access_request.pk}/approve/", {"note": "ok"})

    assert response.status_code == 302
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED
    page = client.get(response["Location"])
    text = page.content.decode()
    assert QUEUED_MESSAGE.split(":")[0] in text
    assert "provisioning has started" not in text

    assert _sweep_with_broker_back(monkeypatch, settings) == [("begin_provisioning", access_request.pk)]


def test_approving_through_the_api_with_the_broker_down_answers_200_with_a_queued_note(
    world: World,
    broker_down: None,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    access_request = make_request(world)

    response = signed_in(APIClient(), world.approver).post(
        f"/api/requests/{access_request.pk}/approve/", {"note": "ok"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["queued"] == QUEUED_NOTE
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.APPROVED
    assert _sweep_with_broker_back(monkeypatch, settings) == [("begin_provisioning", access_request.pk)]


def test_ending_through_the_api_with_the_broker_down_leaves_the_removal_to_the_sweep(
    world: World,
    broker_down: None,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    access_request = make_active(make_request(world))

    response = signed_in(APIClient(), world.requester).post(f"/api/requests/{access_request.pk}/complete/")

    assert response.status_code == 200
    assert response.json()["queued"] == QUEUED_NOTE
    grant = access_request.grants.get()
    assert grant.status == GrantStatus.REMOVING
    assert _sweep_with_broker_back(monkeypatch, settings) == [("deprovision_grant", grant.pk)]


def test_with_the_broker_up_the_answer_has_no_queued_note(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.begin_provisioning, "delay", lambda *args: None)
    monkeypatch.setattr(tasks.send_notification, "delay", lambda *args: None)
    access_request = make_request(world)

    response = signed_in(APIClient(), world.approver).post(f"/api/requests/{access_request.pk}/approve/")

    assert response.status_code == 200
    assert "queued" not in response.json()


def test_extending_with_the_broker_down_needs_no_worker_and_answers_200(world: World, broker_down: None) -> None:
    access_request = make_active(make_request(world))
    before = access_request.expires_at
    assert before is not None

    response = signed_in(APIClient(), world.requester).post(
        f"/api/requests/{access_request.pk}/extend/", {"minutes": 30}, format="json"
    )

    assert response.status_code == 200 and "queued" not in response.json()
    access_request.refresh_from_db()
    assert access_request.expires_at is not None and (access_request.expires_at - before).total_seconds() == 1800


def test_notification_emails_go_out_from_the_web_process_with_the_broker_down(world: World, broker_down: None) -> None:
    from django.core import mail

    from accounts.models import NotificationReceipt
    from requests_app.notifications import Kind, notification_send

    access_request = make_request(world)  # commits: its on-commit send finds the broker down

    asked = [message for message in mail.outbox if "awaits your approval" in message.subject]
    assert len(asked) == 1 and f"#{access_request.pk}" in asked[0].subject
    assert world.approver.email in asked[0].to

    client = Client()
    client.force_login(world.approver)
    assert client.post(f"/requests/{access_request.pk}/approve/", {"note": "ok"}).status_code == 302

    approved = [message for message in mail.outbox if message.subject.endswith("approved")]
    assert len(approved) == 1 and approved[0].to == [world.requester.email]
    # Sent once: a worker that later gets the task (broker back) finds the receipt and sends nothing.
    assert set(NotificationReceipt.objects.filter(request_id=access_request.pk).values_list("kind", flat=True)) == {
        Kind.AWAITING_APPROVAL,
        Kind.APPROVED,
    }
    assert notification_send(kind=Kind.APPROVED, request_id=access_request.pk) is False
    assert len(mail.outbox) == 2
