"""A notification the mail server did not take is not lost: its receipt is a claim until the server
takes the mail, and a claim left unsent is claimed again later, once, by the sweep or a redelivery.
"Ends soon" is said once per end: an extension brings a warning before the new end."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends import locmem
from django.utils import timezone

from accounts.models import NotificationReceipt
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from requests_app.notifications import Kind, notification_send, requests_due_for_notice
from requests_app.notifications.receipts import CLAIM_STALE, MAX_ATTEMPTS
from tests.conftest import World
from tests.factories import make_membership, make_user
from workers import tasks


@pytest.fixture(autouse=True)
def iam_check_off(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = False


@pytest.fixture(autouse=True)
def sent_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the notification task in-process; keep provisioning away from Celery."""
    monkeypatch.setattr(tasks.send_notification, "delay", lambda kind, pk: notification_send(kind=kind, request_id=pk))
    monkeypatch.setattr(tasks.begin_provisioning, "delay", lambda request_id: None)


@pytest.fixture
def mail_server_down(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The mail server refuses every connection until ``back()`` is called."""
    deliver = locmem.EmailBackend.send_messages

    def down(self: locmem.EmailBackend, messages: list[EmailMessage]) -> int:
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", down)

    class Outage:
        @staticmethod
        def back() -> None:
            monkeypatch.setattr(locmem.EmailBackend, "send_messages", deliver)

    return Outage


def _pending(world: World) -> AccessRequest:
    """A request waiting for approval; its on-commit mail is not run (the tests send it themselves)."""
    return services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="fix the disk", ticket="INC-1"
    )


def _later(time_machine: Any, by: timedelta) -> None:
    time_machine.move_to(timezone.now() + by, tick=False)


def _asked(access_request: AccessRequest) -> list[list[str]]:
    subject = f"[Passport] Request #{access_request.pk} awaits your approval"
    return [message.to for message in mail.outbox if message.subject == subject]


def test_approvers_are_asked_once_the_mail_server_is_back(
    world: World, time_machine: Any, mail_server_down: Any, caplog: pytest.LogCaptureFixture
) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)
    with caplog.at_level(logging.WARNING, logger="requests_app.notifications"):
        assert notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk) is False
    assert "was not sent (attempt 1)" in caplog.text
    receipt = NotificationReceipt.objects.get(request_id=access_request.pk)
    assert receipt.sent_at is None  # claimed, not sent

    mail_server_down.back()
    # A delivery while the claim is fresh sends nothing: that sender may still be at it.
    assert notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk) is False
    assert requests_due_for_notice() == []
    assert _asked(access_request) == []

    _later(time_machine, CLAIM_STALE + timedelta(seconds=1))
    assert requests_due_for_notice() == [(Kind.AWAITING_APPROVAL, access_request.pk)]
    assert tasks.warn_expiring_requests() == 1
    assert _asked(access_request) == [["carol@example.test"]]
    receipt.refresh_from_db()
    assert receipt.sent_at is not None and receipt.attempts == 2
    # Sent: nobody sends it again, neither the sweep nor a late redelivery.
    _later(time_machine, CLAIM_STALE * 2)
    assert requests_due_for_notice() == []
    assert notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk) is False
    assert len(_asked(access_request)) == 1


def test_a_mail_whose_sender_was_killed_mid_send_is_sent_by_a_later_sweep(world: World, time_machine: Any) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.FAILED, ended_at=timezone.now())
    # What a worker killed between its claim and the mail server leaves behind.
    NotificationReceipt.objects.create(kind=Kind.FAILED, request_id=access_request.pk, claimed_at=timezone.now())

    assert tasks.warn_expiring_requests() == 0  # claimed a moment ago: not the sweep's yet
    assert notification_send(kind=Kind.FAILED, request_id=access_request.pk) is False  # nor a redelivery's
    _later(time_machine, CLAIM_STALE + timedelta(seconds=1))
    assert tasks.warn_expiring_requests() == 1
    assert tasks.warn_expiring_requests() == 0

    assert [message.subject for message in mail.outbox] == [f"[Passport] Request #{access_request.pk} failed"]


def test_the_failure_mail_is_sent_by_the_sweep_after_an_outage(
    world: World, time_machine: Any, mail_server_down: Any
) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.FAILED, ended_at=timezone.now())
    tasks.warn_expiring_requests()  # the mail server is down
    mail_server_down.back()
    _later(time_machine, CLAIM_STALE + timedelta(minutes=1))
    tasks.warn_expiring_requests()

    assert [message.subject for message in mail.outbox] == [f"[Passport] Request #{access_request.pk} failed"]


def test_two_deliveries_of_a_claim_left_unsent_mail_once(
    world: World, time_machine: Any, mail_server_down: Any
) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)
    notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)  # not sent
    mail_server_down.back()
    _later(time_machine, CLAIM_STALE + timedelta(seconds=1))

    # The sweep's task and a redelivery, at the same moment: the first takes the claim over.
    outcomes = [notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk) for _ in range(2)]

    assert outcomes == [True, False]
    assert _asked(access_request) == [["carol@example.test"]]


def test_a_mail_the_server_never_takes_is_given_up(
    world: World, time_machine: Any, mail_server_down: Any, caplog: pytest.LogCaptureFixture
) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)
    notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)
    NotificationReceipt.objects.filter(request_id=access_request.pk).update(attempts=MAX_ATTEMPTS - 1)
    _later(time_machine, CLAIM_STALE + timedelta(seconds=1))
    with caplog.at_level(logging.ERROR, logger="requests_app.notifications"):
        assert tasks.warn_expiring_requests() == 1  # the last attempt, refused too
    assert f"given up after {MAX_ATTEMPTS} attempts" in caplog.text
    # On record too, for the auditors: nobody was told, and of what.
    (given_up,) = LogbookEntry.objects.filter(action="notification.given_up")
    assert given_up.request_id == access_request.pk and given_up.account_id == world.prod.account_id
    assert given_up.detail == {"kind": Kind.AWAITING_APPROVAL, "attempts": MAX_ATTEMPTS}
    assert given_up.actor_label == "system"

    mail_server_down.back()
    _later(time_machine, CLAIM_STALE + timedelta(seconds=1))
    assert requests_due_for_notice() == []
    assert notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk) is False
    assert mail.outbox == []
    assert LogbookEntry.objects.filter(action="notification.given_up").count() == 1  # given up once


def test_an_unsent_mail_the_request_no_longer_bears_out_is_dropped(
    world: World, time_machine: Any, mail_server_down: Any
) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)
    notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)  # not sent
    mail_server_down.back()
    services.access_request_reject(access_request=access_request, approver=world.approver, note="no")
    mail.outbox.clear()
    _later(time_machine, CLAIM_STALE + timedelta(seconds=1))

    assert requests_due_for_notice() == [(Kind.AWAITING_APPROVAL, access_request.pk)]
    tasks.warn_expiring_requests()

    assert mail.outbox == []  # approvers are not asked about a request already decided
    assert not NotificationReceipt.objects.filter(request_id=access_request.pk, kind=Kind.AWAITING_APPROVAL).exists()
    assert requests_due_for_notice() == []


def test_approvers_whose_mail_was_never_sent_are_asked_by_the_sweep(
    world: World, time_machine: Any, settings: Any
) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)  # its on-commit task lost: no claim, no mail
    assert requests_due_for_notice() == []  # within the grace its own task may still come
    _later(time_machine, timedelta(seconds=settings.PASSPORT_SWEEP_GRACE_SECONDS + 1))

    assert tasks.warn_expiring_requests() == 1
    assert tasks.warn_expiring_requests() == 0
    assert _asked(access_request) == [["carol@example.test"]]


def test_nobody_to_tell_is_settled_not_tried_again(world: World, time_machine: Any) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    world.approver.email_notifications = False
    world.approver.save(update_fields=["email_notifications"])
    access_request = _pending(world)

    assert notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk) is False
    _later(time_machine, CLAIM_STALE + timedelta(seconds=1))

    assert NotificationReceipt.objects.get(request_id=access_request.pk).sent_at is not None
    assert requests_due_for_notice() == []


def test_an_extended_request_is_warned_again_before_its_new_end_once(
    world: World, time_machine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE,
        decided_at=now,
        decided_by=world.approver,
        activated_at=now,
        expires_at=now + timedelta(minutes=5),
    )
    assert tasks.warn_expiring_requests() == 1  # "ends soon": the requester extends by an hour
    access_request.refresh_from_db()
    first_end = access_request.expires_at
    assert first_end is not None
    monkeypatch.setattr("requests_app.services.lifecycle.extend.transaction.on_commit", lambda fn: None)
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    access_request.refresh_from_db()
    new_end = access_request.expires_at
    assert new_end is not None and new_end > first_end
    assert requests_due_for_notice() == []  # the new end is an hour away

    time_machine.move_to(new_end - timedelta(minutes=5), tick=False)
    assert tasks.warn_expiring_requests() == 1
    assert tasks.warn_expiring_requests() == 0

    warnings = [message for message in mail.outbox if message.subject.endswith("ends soon")]
    assert len(warnings) == 2
    local = timezone.localtime
    assert f"{local(first_end):%Y-%m-%d %H:%M}" in warnings[0].body
    assert f"{local(new_end):%Y-%m-%d %H:%M}" in warnings[1].body
    assert sorted(
        NotificationReceipt.objects.filter(request_id=access_request.pk, kind=Kind.EXPIRING).values_list(
            "expires_at", flat=True
        )
    ) == [first_end, new_end]


def _approvers(world: World, count: int) -> None:
    for n in range(count):
        make_membership(make_user(f"approver{n}"), world.prod, "observer", can_approve=True)


def _mail_server_taking(monkeypatch: pytest.MonkeyPatch, time_machine: Any, per_message: timedelta) -> Any:
    """A busy mail server: each message takes ``per_message`` of the clock; ``then(n, call)`` runs
    ``call`` once, after the server has taken ``n`` messages in all."""
    deliver = locmem.EmailBackend.send_messages
    hooks: dict[int, Any] = {}

    def slow(self: locmem.EmailBackend, messages: list[EmailMessage]) -> int:
        time_machine.move_to(timezone.now() + per_message, tick=False)
        taken = deliver(self, messages)
        hook = hooks.pop(len(mail.outbox), None)
        if hook is not None:
            hook()
        return taken

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", slow)

    class Server:
        @staticmethod
        def then(count: int, call: Any) -> None:
            hooks[count] = call

    return Server


def test_a_send_slower_than_a_stale_claim_is_not_taken_over_by_the_sweep(
    world: World, time_machine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 approvers at 8 s each (within EMAIL_TIMEOUT) is more than CLAIM_STALE: the claim is renewed
    after each, so the sweep's retry meanwhile finds it fresh and nobody is asked twice."""
    _approvers(world, 40)
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)
    server = _mail_server_taking(monkeypatch, time_machine, timedelta(seconds=8))
    retried: list[bool] = []
    server.then(
        39, lambda: retried.append(notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk))
    )

    assert notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)

    recipients = [address for message in mail.outbox for address in message.to]
    assert retried == [False] and len(recipients) == 41 == len(set(recipients))
    receipt = NotificationReceipt.objects.get(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)
    assert receipt.sent_at is not None and receipt.attempts == 1


def test_a_sender_whose_claim_was_taken_over_stops_mailing(
    world: World, time_machine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender stuck on one message past CLAIM_STALE has its claim taken over by the sweep's retry,
    which mails everyone; the first sender, finding its claim gone, mails nobody else."""
    _approvers(world, 5)
    time_machine.move_to(timezone.now(), tick=False)
    access_request = _pending(world)
    server = _mail_server_taking(monkeypatch, time_machine, timedelta(seconds=1))
    stuck_then_retried: list[bool] = []

    def stuck_past_stale_then_retried() -> None:
        time_machine.move_to(timezone.now() + CLAIM_STALE, tick=False)
        stuck_then_retried.append(notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk))

    server.then(1, stuck_past_stale_then_retried)

    notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)

    recipients = [address for message in mail.outbox for address in message.to]
    # The first sender's one message, then the retry's six: the first sender sent no more.
    assert stuck_then_retried == [True] and len(recipients) == 7 and len(set(recipients)) == 6
    receipt = NotificationReceipt.objects.get(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)
    assert receipt.sent_at is not None and receipt.attempts == 2
