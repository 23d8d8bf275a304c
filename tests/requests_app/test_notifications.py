"""Email notifications: who hears what, once, after commit, and never at the request's expense."""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends import locmem
from django.utils import timezone

from accounts.models import Membership, NotificationReceipt, User
from requests_app import services
from requests_app.models import AccessRequest, EndReason, RequestStatus
from requests_app.notifications import Kind, notification_send, requests_due_for_notice
from tests.conftest import World
from tests.factories import make_membership, make_user
from workers import tasks


@pytest.fixture(autouse=True)
def iam_check_off(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = False


@pytest.fixture(autouse=True)
def sent_inline(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Run the notification task in-process; keep provisioning away from Celery."""
    queued: list[tuple[str, int]] = []

    def send(kind: str, request_id: int) -> None:
        queued.append((kind, request_id))
        notification_send(kind=kind, request_id=request_id)

    monkeypatch.setattr(tasks.send_notification, "delay", send)
    monkeypatch.setattr(tasks.begin_provisioning, "delay", lambda request_id: None)
    return queued


def create(world: World, capture: Any) -> AccessRequest:
    with capture(execute=True):
        return services.access_request_create(
            requester=world.requester, account=world.prod, instances=[world.web], reason="fix the disk", ticket="INC-1"
        )


def test_approvers_hear_of_a_request_awaiting_them(world: World, django_capture_on_commit_callbacks: Any) -> None:
    second = make_user("grace")
    make_membership(second, world.prod, "admin", can_approve=True)
    quiet = make_user("quinn", email_notifications=False)
    make_membership(quiet, world.prod, "admin", can_approve=True)
    access_request = create(world, django_capture_on_commit_callbacks)
    # One message each: nobody sees who else was asked, one refused address stops no one else.
    assert sorted(message.to for message in mail.outbox) == [["carol@example.test"], ["grace@example.test"]]
    message = mail.outbox[0]
    assert f"#{access_request.pk}" in message.subject and "awaits your approval" in message.subject
    assert world.web.instance_id in message.body and "INC-1" in message.body
    assert f"/requests/{access_request.pk}/" in message.body or str(access_request.pk) in message.body


@pytest.mark.parametrize(
    "address", ["dan@customer.test\nBcc: spy@evil.test", "dan@customer.test, spy@evil.test", "dan@\u202eevil.test"]
)
def test_an_address_that_is_not_one_address_keeps_nobody_else_from_hearing(
    world: World, django_capture_on_commit_callbacks: Any, address: str
) -> None:
    # Stored before SAML sign-in checked addresses, or set in the admin.
    dan = make_user("dan")
    User.objects.filter(pk=dan.pk).update(email=address)
    make_membership(dan, world.prod, "admin", can_approve=True)
    create(world, django_capture_on_commit_callbacks)
    assert [message.to for message in mail.outbox] == [["carol@example.test"]]


def test_a_recipient_the_mail_server_refuses_keeps_nobody_else_from_hearing(
    world: World, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = make_user("grace")
    make_membership(second, world.prod, "admin", can_approve=True)
    deliver = locmem.EmailBackend.send_messages

    def refuse_carol(self: locmem.EmailBackend, messages: list[EmailMessage]) -> int:
        if any("carol@example.test" in message.to for message in messages):
            raise smtplib.SMTPRecipientsRefused({"carol@example.test": (550, b"no such mailbox")})
        return deliver(self, messages)

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", refuse_carol)
    create(world, django_capture_on_commit_callbacks)
    assert [message.to for message in mail.outbox] == [["grace@example.test"]]


def test_the_requester_is_not_asked_under_another_user(world: World, django_capture_on_commit_callbacks: Any) -> None:
    # The requester's second user (their SSO one beside a local account) approves for prod.
    second_self = make_user("alice-sso")
    second_self.email = "ALICE@example.test"
    second_self.save(update_fields=["email"])
    make_membership(second_self, world.prod, "admin", can_approve=True)
    create(world, django_capture_on_commit_callbacks)
    assert [message.to for message in mail.outbox] == [["carol@example.test"]]


def test_nothing_is_sent_before_commit(world: World, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.access_request_create(
            requester=world.requester, account=world.prod, instances=[world.web], reason="fix the disk"
        )
    assert mail.outbox == []
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 1


def test_requester_hears_of_approval(world: World, django_capture_on_commit_callbacks: Any) -> None:
    access_request = create(world, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_approve(access_request=access_request, approver=world.approver, note="go")
    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["alice@example.test"], f"[Passport] Request #{access_request.pk} approved")
    ]
    assert "carol" in mail.outbox[0].body


def test_the_requester_hears_why_their_access_was_revoked(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    access_request = create(world, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_approve(access_request=access_request, approver=world.approver)
    mail.outbox.clear()
    Membership.objects.filter(user=world.requester, account=world.prod).update(role=Membership.Role.OBSERVER)

    with django_capture_on_commit_callbacks(execute=True):
        services.access_requests_revoke_for_memberships(
            memberships=[(world.requester.pk, world.prod.pk)], actor=world.approver, via="admin"
        )

    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["alice@example.test"], f"[Passport] Request #{access_request.pk} revoked")
    ]
    # The reason recorded in the request.revoked Logbook entry, as it was then.
    assert "Alice Admin has the Observer role on Acme Production (111111111111) now" in mail.outbox[0].body


def test_requester_hears_of_rejection_with_the_note(world: World, django_capture_on_commit_callbacks: Any) -> None:
    access_request = create(world, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_reject(access_request=access_request, approver=world.approver, note="use staging")
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.test"]
    assert "rejected" in mail.outbox[0].subject and "use staging" in mail.outbox[0].body


def test_the_requester_can_opt_out(world: World, django_capture_on_commit_callbacks: Any) -> None:
    world.requester.email_notifications = False
    world.requester.save(update_fields=["email_notifications"])
    access_request = create(world, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_approve(access_request=access_request, approver=world.approver)
    assert mail.outbox == []


def test_provisioning_failure_is_told_once_by_the_sweep(world: World, django_capture_on_commit_callbacks: Any) -> None:
    access_request = create(world, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.FAILED, ended_at=timezone.now())
    assert tasks.warn_expiring_requests() == 1
    assert [m.subject for m in mail.outbox] == [f"[Passport] Request #{access_request.pk} failed"]
    assert tasks.warn_expiring_requests() == 0
    assert len(mail.outbox) == 1


def test_expiry_warning_ten_minutes_before_the_end_once(world: World, django_capture_on_commit_callbacks: Any) -> None:
    access_request = create(world, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(minutes=25)
    )
    assert requests_due_for_notice(now=now) == []
    later = now + timedelta(minutes=16)  # 9 minutes left
    assert requests_due_for_notice(now=later) == [(Kind.EXPIRING, access_request.pk)]
    # The send checks the request against the real clock: 9 minutes left now.
    AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=now + timedelta(minutes=9))
    assert notification_send(kind=Kind.EXPIRING, request_id=access_request.pk) is True
    assert "ends soon" in mail.outbox[0].subject and mail.outbox[0].to == ["alice@example.test"]
    assert requests_due_for_notice(now=later) == []
    assert notification_send(kind=Kind.EXPIRING, request_id=access_request.pk) is False  # a duplicate delivery
    assert len(mail.outbox) == 1


def test_the_sweep_task_sends_the_expiry_warning(world: World, django_capture_on_commit_callbacks: Any) -> None:
    access_request = create(world, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(minutes=5)
    )
    assert tasks.warn_expiring_requests() == 1
    assert tasks.warn_expiring_requests() == 0
    assert len(mail.outbox) == 1 and "ends soon" in mail.outbox[0].subject


def test_a_mail_failure_is_logged_and_the_approval_stands(
    world: World,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    access_request = create(world, django_capture_on_commit_callbacks)

    def broken(*args: Any, **kwargs: Any) -> int:
        raise OSError("mail server down")

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", broken)
    with (
        caplog.at_level(logging.ERROR, logger="requests_app.notifications"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        approved = services.access_request_approve(access_request=access_request, approver=world.approver)
    assert approved.status == RequestStatus.APPROVED
    assert "could not be sent" in caplog.text


def test_a_queue_failure_is_logged_not_raised_and_the_mail_goes_out_from_here(
    world: World,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broker_down(kind: str, request_id: int) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.send_notification, "delay", broker_down)
    with caplog.at_level(logging.WARNING, logger="requests_app.notifications"):
        access_request = create(world, django_capture_on_commit_callbacks)
    assert access_request.status == RequestStatus.PENDING
    assert "broker unreachable" in caplog.text
    assert [message.subject for message in mail.outbox] == [
        f"[Passport] Request #{access_request.pk} awaits your approval"
    ]


def test_any_other_queue_failure_is_logged_not_raised(
    world: World,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(kind: str, request_id: int) -> None:
        raise RuntimeError("a bug in the queueing")

    monkeypatch.setattr(tasks.send_notification, "delay", broken)
    with caplog.at_level(logging.ERROR, logger="requests_app.notifications"):
        access_request = create(world, django_capture_on_commit_callbacks)
    assert access_request.status == RequestStatus.PENDING
    assert "could not queue" in caplog.text


def test_the_sweep_is_scheduled(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["warn-expiring-requests"]
    assert entry["task"] == "workers.tasks.warn_expiring_requests"


# --- what a person's text can do in a mail ----------------------------------------------------


def _lines_of_passport(body: str) -> list[str]:
    """The mail's lines that are not indented free text."""
    return [line for line in body.split("\n") if not line.startswith("    ")]


def test_a_reason_cannot_add_lines_of_its_own_to_the_approvers_mail(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester,
        account=world.prod,
        instances=[world.web],
        reason="rotate the disk\n\nhttp://evil.example/requests/1/approve\n\nInstances: i-0aaaaaaaaaaaaaaaa",
        ticket="INC-1",
    )

    assert notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)

    body = mail.outbox[0].body
    ours = _lines_of_passport(body)
    assert [line for line in ours if line.startswith("Instances:")] == [f"Instances: {world.web.instance_id}"]
    assert not any("evil.example" in line for line in ours)  # the typed link stays inside the reason
    assert body.index(f"/requests/{access_request.pk}/") < body.index("evil.example")  # the real link first
    assert "    rotate the disk\n    \n    http://evil.example/requests/1/approve" in body


def test_a_name_or_a_ticket_is_one_line_in_a_mail(world: World) -> None:
    world.requester.first_name = (
        "Dan\nInstances: i-0aaaaaaaaaaaaaaaa\nReason: read-only\n\nhttps://evil.example/approve"
    )
    world.requester.save(update_fields=["first_name"])
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="patch", ticket="INC-1"
    )
    type(access_request).objects.filter(pk=access_request.pk).update(ticket="INC-1\nhttps://evil.example/x")

    assert notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)

    ours = _lines_of_passport(mail.outbox[0].body)
    assert [line for line in ours if line.startswith("Instances:")] == [f"Instances: {world.web.instance_id}"]
    assert [line for line in ours if line.startswith("Reason:")] == ["Reason:"]
    name = " ".join(f"{world.requester.first_name} {world.requester.last_name}".split())
    assert [line for line in ours if "evil.example" in line] == [
        f"{name} asks for access for 1:00:00.",
        f"Request #{access_request.pk} by {name} on Acme Production (111111111111)",
        "Ticket: INC-1 https://evil.example/x",
    ]


def _forged(kind: str, request_id: int) -> bool:
    """The worker's task run with arguments anyone who reaches the broker could have written."""
    return bool(tasks.send_notification(kind, request_id))


def test_a_mail_the_request_state_does_not_bear_out_is_refused_unclaimed(
    world: World, django_capture_on_commit_callbacks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="patch", ticket="INC-1"
    )
    pk = access_request.pk
    # Pending: only the approvers' mail; every other kind is refused, logged, and leaves no receipt.
    with caplog.at_level(logging.WARNING, logger="requests_app.notifications"):
        for kind in (Kind.APPROVED, Kind.REJECTED, Kind.FAILED, Kind.EXPIRING, Kind.REVOKED, "bogus"):
            assert _forged(kind, pk) is False, kind
    assert mail.outbox == []
    assert not NotificationReceipt.objects.filter(request_id=pk).exists()
    assert "refused" in caplog.text

    now = timezone.now()
    AccessRequest.objects.filter(pk=pk).update(
        status=RequestStatus.ACTIVE, decided_at=now, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    # Active, an hour left: approved it was; not awaiting approval, nor ending soon, nor rejected.
    for kind in (Kind.AWAITING_APPROVAL, Kind.EXPIRING, Kind.REJECTED, Kind.FAILED, Kind.REVOKED):
        assert _forged(kind, pk) is False, kind
    assert mail.outbox == []
    assert _forged(Kind.APPROVED, pk) is True
    AccessRequest.objects.filter(pk=pk).update(expires_at=now + timedelta(minutes=5))
    assert _forged(Kind.EXPIRING, pk) is True

    AccessRequest.objects.filter(pk=pk).update(status=RequestStatus.REJECTED)
    assert _forged(Kind.REJECTED, pk) is True
    AccessRequest.objects.filter(pk=pk).update(status=RequestStatus.FAILED)
    assert _forged(Kind.FAILED, pk) is True
    AccessRequest.objects.filter(pk=pk).update(status=RequestStatus.COMPLETING, end_reason=EndReason.REVOKED)
    assert _forged(Kind.REVOKED, pk) is True
    assert sorted(NotificationReceipt.objects.filter(request_id=pk).values_list("kind", flat=True)) == sorted(
        [Kind.APPROVED, Kind.EXPIRING, Kind.REJECTED, Kind.FAILED, Kind.REVOKED]
    )


def test_a_rejected_request_is_never_told_it_was_approved(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="patch", ticket="INC-1"
    )
    services.access_request_reject(access_request=access_request, approver=world.approver, note="no")
    assert _forged(Kind.APPROVED, access_request.pk) is False
    assert _forged(Kind.AWAITING_APPROVAL, access_request.pk) is False
    assert not NotificationReceipt.objects.filter(request_id=access_request.pk, kind=Kind.APPROVED).exists()
