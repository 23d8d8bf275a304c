"""A request nobody approves expires too: after ``PASSPORT_PENDING_REQUEST_HOURS`` of waiting the
expiry sweep ends it (``expired``, a ``request.expired`` Logbook entry saying it was never approved,
a mail to the requester), and it can no longer be approved, rejected or cancelled."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApprovalPolicy
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, RequestStatus
from requests_app.notifications import Kind, notification_send, requests_due_for_notice
from tests.conftest import World
from tests.factories import make_membership, make_user
from workers import tasks

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


@pytest.fixture(autouse=True)
def mail_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The notification task runs in this process (what the worker would do with it)."""
    monkeypatch.setattr(
        tasks.send_notification, "delay", lambda kind, request_id: notification_send(kind=kind, request_id=request_id)
    )


def _pending(world: World, *, waited: timedelta, reason: str = "Disk full on web-1") -> AccessRequest:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web, world.db], reason=reason
    )
    AccessRequest.objects.filter(pk=access_request.pk).update(created_at=timezone.now() - waited)
    access_request.refresh_from_db()
    return access_request


def _sweep(capture: Any) -> int:
    with capture(execute=True):
        return services.access_requests_expire_due()


def test_the_sweep_expires_a_request_left_pending_too_long_and_leaves_a_fresh_one(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    stale = _pending(world, waited=timedelta(hours=24, minutes=1), reason="Stale one")
    fresh = _pending(world, waited=timedelta(hours=23), reason="Fresh one")
    mail.outbox.clear()

    assert _sweep(django_capture_on_commit_callbacks) == 1

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, stale.end_reason, stale.ended_by, stale.decided_at) == (
        RequestStatus.EXPIRED,
        EndReason.EXPIRED,
        None,
        None,
    )
    assert stale.ended_at is not None and stale.expires_at is None
    # Nothing was handed out: its grants end as never provisioned.
    assert set(Grant.objects.filter(request=stale).values_list("status", "attempts")) == {(GrantStatus.REMOVED, 0)}
    assert fresh.status == RequestStatus.PENDING
    assert set(Grant.objects.filter(request=fresh).values_list("status", flat=True)) == {GrantStatus.PENDING}

    entry = LogbookEntry.objects.get(request_id=stale.pk, action="request.expired")
    assert entry.actor_id is None
    assert entry.detail["reason"] == "not approved in time"
    assert entry.detail["end_reason"] == EndReason.EXPIRED
    assert sorted(entry.instance_ids.split()) == sorted([world.web.instance_id, world.db.instance_id])
    assert not LogbookEntry.objects.filter(request_id=fresh.pk).exclude(action="request.created").exists()
    assert logbook_verify().intact

    # The requester hears of it; nobody else does, and the fresh request's requester hears nothing of it.
    assert [message.to for message in mail.outbox] == [[world.requester.email]]
    message = mail.outbox[0]
    assert f"#{stale.pk}" in message.subject and "expired" in message.subject.lower()
    assert "24 h" in message.body and "approved" in message.body

    # Swept again: nothing more happens to either.
    assert _sweep(django_capture_on_commit_callbacks) == 0
    assert LogbookEntry.objects.filter(request_id=stale.pk, action="request.expired").count() == 1
    assert len(mail.outbox) == 1


def test_the_beat_task_expires_stale_pending_requests(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = _pending(world, waited=timedelta(days=7))
    # The batches the task fans out run here, as a worker on the revocation queue would run them.
    monkeypatch.setattr(tasks.expire_requests, "delay", lambda request_ids: tasks.expire_requests(request_ids))
    assert tasks.expire_due_requests() == 1
    stale.refresh_from_db()
    assert stale.status == RequestStatus.EXPIRED


def test_the_wait_is_the_setting(world: World, settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    settings.PASSPORT_PENDING_REQUEST_HOURS = 2
    stale = _pending(world, waited=timedelta(hours=2, seconds=5))
    fresh = _pending(world, waited=timedelta(hours=1, minutes=50))
    assert _sweep(django_capture_on_commit_callbacks) == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, fresh.status) == (RequestStatus.EXPIRED, RequestStatus.PENDING)
    assert LogbookEntry.objects.get(request_id=stale.pk, action="request.expired").detail["waited_hours"] == 2


def test_a_request_waiting_for_its_second_approval_expires_too(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    stale = _pending(world, waited=timedelta(hours=20))
    services.access_request_approve(access_request=stale, approver=world.approver)
    stale.refresh_from_db()
    assert stale.status == RequestStatus.PENDING  # one of two
    AccessRequest.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=25))
    assert _sweep(django_capture_on_commit_callbacks) == 1
    stale.refresh_from_db()
    assert stale.status == RequestStatus.EXPIRED


def test_an_active_request_is_not_expired_by_its_age(world: World, django_capture_on_commit_callbacks: Any) -> None:
    """Only the wait for approval counts: an active request made two days ago runs to its own end."""
    access_request = _pending(world, waited=timedelta(days=2))
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, decided_at=now, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    assert _sweep(django_capture_on_commit_callbacks) == 0
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.ACTIVE


def test_a_request_past_its_wait_is_refused_approval_before_the_sweep_reaches_it(world: World) -> None:
    """The sweep runs every 10 s, or not at all while the scheduler is down: the wait is the rule, not the sweep."""
    stale = _pending(world, waited=timedelta(hours=24, seconds=1))
    with pytest.raises(RequestRuleError) as refused:
        services.access_request_approve(access_request=stale, approver=world.approver)
    assert refused.value.code == "conflict"
    assert "not approved within 24 h" in str(refused.value.errors)
    stale.refresh_from_db()
    assert (stale.status, stale.decided_at) == (RequestStatus.PENDING, None)
    assert not LogbookEntry.objects.filter(action="request.approved").exists()


def _expired_unapproved(world: World, capture: Any) -> AccessRequest:
    stale = _pending(world, waited=timedelta(days=7))
    assert _sweep(capture) == 1
    stale.refresh_from_db()
    assert stale.status == RequestStatus.EXPIRED
    return stale


def test_approving_rejecting_or_cancelling_after_it_expired_is_refused_by_the_api(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    stale = _expired_unapproved(world, django_capture_on_commit_callbacks)
    approver, requester = APIClient(), APIClient()
    approver.force_authenticate(world.approver)
    requester.force_authenticate(world.requester)
    for client, action in ((approver, "approve"), (approver, "reject"), (requester, "cancel")):
        response = client.post(f"/api/requests/{stale.pk}/{action}/", {"note": "ok"}, format="json")
        assert response.status_code == 409, (action, response.content)
        assert "expired before it was approved" in response.content.decode(), action
    stale.refresh_from_db()
    assert (stale.status, stale.decided_at) == (RequestStatus.EXPIRED, None)
    assert not LogbookEntry.objects.filter(
        request_id=stale.pk, action__in=["request.approved", "request.rejected", "request.cancelled"]
    ).exists()


def test_approving_after_it_expired_is_refused_on_the_page(
    client: Any, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    stale = _expired_unapproved(world, django_capture_on_commit_callbacks)
    client.force_login(world.approver)
    page = client.get(reverse("requests:detail", args=[stale.pk])).content.decode()
    assert 'data-testid="expired-unapproved"' in page
    response = client.post(reverse("requests:action", args=[stale.pk, "approve"]), {"note": "ok"}, follow=True)
    assert "expired before it was approved" in response.content.decode()
    stale.refresh_from_db()
    assert stale.status == RequestStatus.EXPIRED


def test_the_page_shows_how_long_a_pending_request_may_still_wait(client: Any, world: World) -> None:
    waiting = _pending(world, waited=timedelta(hours=21, minutes=30))
    client.force_login(world.requester)
    page = client.get(reverse("requests:detail", args=[waiting.pk])).content.decode()
    shown = re.search(r'data-testid="approval-deadline">([^<]*)<', page)
    assert shown is not None, page
    text = " ".join(shown.group(1).replace("\xa0", " ").split())
    assert text.startswith("Expires unapproved in 2 hours, 29 minutes"), text


def test_a_second_approver_page_and_queue_offer_no_approve_past_the_wait(client: Any, world: World) -> None:
    stale = _pending(world, waited=timedelta(hours=25))
    grace = make_user("grace")
    make_membership(grace, world.prod, "admin", can_approve=True)
    client.force_login(grace)
    queue = client.get(reverse("requests:approvals")).content.decode()
    assert f"#{stale.pk}" in queue
    assert "not approved within 24 h" in queue


def test_the_notification_sweep_tells_the_requester_when_the_mail_task_was_lost(
    world: World, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    stale = _pending(world, waited=timedelta(hours=30))
    monkeypatch.setattr(tasks.send_notification, "delay", lambda kind, request_id: None)  # the task lost
    assert _sweep(django_capture_on_commit_callbacks) == 1
    assert (Kind.EXPIRED_UNAPPROVED, stale.pk) in requests_due_for_notice()
    mail.outbox.clear()
    assert notification_send(kind=Kind.EXPIRED_UNAPPROVED, request_id=stale.pk)
    assert [message.to for message in mail.outbox] == [[world.requester.email]]
    assert (Kind.EXPIRED_UNAPPROVED, stale.pk) not in requests_due_for_notice()
    # A request that expired at the end of its access is no such request.
    assert not notification_send(kind=Kind.EXPIRED_UNAPPROVED, request_id=_pending(world, waited=timedelta(0)).pk)
