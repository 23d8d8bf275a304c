"""What the notification mails tell, and of which events: a request back to pending is asked (and
told) again, once; administrator rights are named; a revocation says the reason it was recorded
with; the people who approved a request hear of its extension; a request on an account with no
approver is put to the site admins."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import ApprovalPolicy, Membership, NotificationReceipt, User
from requests_app import services
from requests_app.models import AccessRequest, EndReason, RequestStatus
from requests_app.notifications import Kind, notification_send
from requests_app.notifications.delivery import requests_due_for_notice
from tests.conftest import World
from tests.factories import make_membership, make_user
from tests.requests_app.test_services import activate, create
from workers import tasks

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


@pytest.fixture(autouse=True)
def inline_mail(monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any) -> Any:
    """The notification task run in-process after commit; ``inline_mail(execute=True)`` runs a change."""
    monkeypatch.setattr(
        tasks.send_notification, "delay", lambda kind, rid: notification_send(kind=kind, request_id=rid)
    )
    return django_capture_on_commit_callbacks


def _to(address: str) -> list[Any]:
    return [m for m in mail.outbox if address in m.to]


def _approved(world: World, inline_mail: Any, **kw: Any) -> AccessRequest:
    with inline_mail(execute=True):
        access_request = create(world, **kw)
    with inline_mail(execute=True):
        services.access_request_approve(access_request=access_request, approver=world.approver)
    return access_request


def _active(world: World, inline_mail: Any, **kw: Any) -> AccessRequest:
    access_request = _approved(world, inline_mail, **kw)
    with inline_mail(execute=True):
        activate(access_request)
    assert access_request.status == RequestStatus.ACTIVE
    return access_request


# --- back to pending ----------------------------------------------------------------------


def test_a_request_back_to_pending_is_asked_again_and_its_requester_told_once(world: World, inline_mail: Any) -> None:
    grace = make_user("grace")
    make_membership(grace, world.prod, "admin", can_approve=True)
    access_request = _approved(world, inline_mail)
    mail.outbox.clear()
    User.objects.filter(pk=world.approver.pk).update(is_active=False)  # carol leaves before provisioning

    with inline_mail(execute=True):
        services.access_request_begin_provisioning(request_id=access_request.pk)

    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    assert sorted((m.to[0], m.subject) for m in mail.outbox) == [
        ("alice@example.test", f"[Passport] Request #{access_request.pk} waits for approval again"),
        ("grace@example.test", f"[Passport] Request #{access_request.pk} awaits your approval"),
    ]
    assert "no longer stands" in _to("grace@example.test")[0].body
    assert "deactivated" in _to("alice@example.test")[0].body  # why, as the Logbook recorded it

    # A redelivery of either task is the same event: not mailed twice.
    assert notification_send(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk) is False
    assert notification_send(kind=Kind.BACK_TO_PENDING, request_id=access_request.pk) is False
    assert len(mail.outbox) == 2

    # Approved again (by grace): alice hears it, though she heard "approved" once already.
    mail.outbox.clear()
    with inline_mail(execute=True):
        services.access_request_approve(access_request=access_request, approver=grace)
    assert [m.subject for m in _to("alice@example.test")] == [f"[Passport] Request #{access_request.pk} approved"]


def test_the_sweep_asks_again_when_the_re_asking_task_was_lost(
    world: World, inline_mail: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """The first asking's receipt (sent) must not hide the second: the sweep finds a request back to
    pending whose approvers and requester were not told of it, and tells them once."""
    grace = make_user("grace")
    make_membership(grace, world.prod, "admin", can_approve=True)
    access_request = _approved(world, inline_mail)
    User.objects.filter(pk=world.approver.pk).update(is_active=False)
    monkeypatch.setattr(tasks.send_notification, "delay", lambda kind, rid: None)  # the worker died
    with inline_mail(execute=True):
        services.access_request_begin_provisioning(request_id=access_request.pk)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    mail.outbox.clear()

    # Not before the grace (the task may still run), then both are due.
    assert (Kind.AWAITING_APPROVAL, access_request.pk) not in requests_due_for_notice()
    later = timezone.now() + timedelta(seconds=settings.PASSPORT_SWEEP_GRACE_SECONDS + 1)
    due = requests_due_for_notice(now=later)
    assert (Kind.AWAITING_APPROVAL, access_request.pk) in due
    assert (Kind.BACK_TO_PENDING, access_request.pk) in due
    for kind, request_id in due:
        notification_send(kind=kind, request_id=request_id)
    assert [m.subject for m in _to("grace@example.test")] == [
        f"[Passport] Request #{access_request.pk} awaits your approval"
    ]
    assert [m.subject for m in _to("alice@example.test")] == [
        f"[Passport] Request #{access_request.pk} waits for approval again"
    ]
    # Told: the next sweep finds nothing more of it.
    assert not [item for item in requests_due_for_notice(now=later) if item[1] == access_request.pk]


def test_a_retried_send_of_the_first_asking_is_not_mailed_as_the_second(world: World, inline_mail: Any) -> None:
    """The receipts of the first asking and of the one after the request went back are distinct
    rows: the first one's is left alone, and the second is told once."""
    grace = make_user("grace")
    make_membership(grace, world.prod, "admin", can_approve=True)
    access_request = _approved(world, inline_mail)
    User.objects.filter(pk=world.approver.pk).update(is_active=False)
    with inline_mail(execute=True):
        services.access_request_begin_provisioning(request_id=access_request.pk)
    receipts = NotificationReceipt.objects.filter(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)
    first, second = receipts.order_by("event_id")
    assert first.event_id == 0 and second.event_id > 0 and first.sent_at and second.sent_at


def test_a_waits_again_or_extended_mail_is_refused_for_a_request_it_did_not_happen_to(
    world: World, inline_mail: Any
) -> None:
    """Whoever reaches the broker can name any kind: the request's record must bear it out."""
    with inline_mail(execute=True):
        pending = create(world)
    active = _active(world, inline_mail, instances=[world.db])
    mail.outbox.clear()
    assert notification_send(kind=Kind.BACK_TO_PENDING, request_id=pending.pk) is False
    assert notification_send(kind=Kind.EXTENDED, request_id=active.pk) is False
    assert mail.outbox == []


# --- what the mails say -------------------------------------------------------------------


def test_the_mails_say_administrator_rights_are_asked_for(world: World, inline_mail: Any) -> None:
    with inline_mail(execute=True):
        create(world, admin_rights=True)
    (message,) = _to("carol@example.test")
    assert "Administrator rights: asked for (sudo on Linux, Administrators on Windows)" in message.body
    mail.outbox.clear()
    with inline_mail(execute=True):
        create(world, instances=[world.db])
    (message,) = _to("carol@example.test")
    assert "Administrator rights" not in message.body


def test_a_revocation_by_a_policy_rule_says_the_rule_not_a_role_change(world: World, inline_mail: Any) -> None:
    access_request = _active(world, inline_mail, admin_rights=True, ticket="CHG-1")
    mail.outbox.clear()
    with inline_mail(execute=True):
        policy, _ = ApprovalPolicy.objects.get_or_create(account=world.prod)
        policy.deny_admin_rights = True
        policy.save()
    access_request.refresh_from_db()
    assert access_request.end_reason == EndReason.REVOKED
    (message,) = _to("alice@example.test")
    # alice is still an Admin of the account: her role did not change, a deny rule ended it.
    assert "role on the account changed" not in message.body
    assert "administrator rights" in message.body.split("\n", 1)[0].lower(), message.body


def test_a_revocation_for_a_lost_role_says_the_role_recorded_then(world: World, inline_mail: Any) -> None:
    access_request = _active(world, inline_mail)
    mail.outbox.clear()
    Membership.objects.filter(user=world.requester, account=world.prod).update(role=Membership.Role.OBSERVER)
    with inline_mail(execute=True):
        services.access_requests_revoke_for_memberships(
            memberships=[(world.requester.pk, world.prod.pk)], actor=world.approver, via="admin"
        )
    # Made Admin again before the mail is built: it still says why it was revoked.
    Membership.objects.filter(user=world.requester, account=world.prod).update(role=Membership.Role.ADMIN)
    mail.outbox.clear()
    NotificationReceipt.objects.filter(kind=Kind.REVOKED, request_id=access_request.pk).delete()
    assert notification_send(kind=Kind.REVOKED, request_id=access_request.pk)
    (message,) = _to("alice@example.test")
    assert "Observer role on Acme Production (111111111111)" in message.body, message.body


# --- extensions ---------------------------------------------------------------------------


def test_the_approvers_who_approved_hear_of_an_extension(world: World, inline_mail: Any) -> None:
    grace = make_user("grace")
    make_membership(grace, world.prod, "admin", can_approve=True)  # an approver who did not approve it
    access_request = _active(world, inline_mail, duration=timedelta(hours=1))
    mail.outbox.clear()

    with inline_mail(execute=True):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))

    access_request.refresh_from_db()
    assert access_request.total_duration == timedelta(hours=3)
    (message,) = mail.outbox
    assert message.to == ["carol@example.test"]
    assert message.subject == f"[Passport] Request #{access_request.pk} extended"
    ends = f"{timezone.localtime(access_request.expires_at):%Y-%m-%d %H:%M %Z}"
    assert f"it now ends at {ends}, 3 h 00 min in all" in message.body and "nothing to do" in message.body

    # Each extension is told once: the second too, a redelivery of it not.
    with inline_mail(execute=True):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(minutes=30))
    assert len(mail.outbox) == 2 and "3 h 30 min in all" in mail.outbox[1].body
    assert notification_send(kind=Kind.EXTENDED, request_id=access_request.pk) is False
    assert len(mail.outbox) == 2


def test_an_approver_who_left_the_account_is_not_told_of_a_later_extension(world: World, inline_mail: Any) -> None:
    # carol and grace approved it while the account asked for two; it asks for one now, so grace's
    # approval still stands behind an extension once carol leaves (with none standing, there is none:
    # tests/requests_app/test_extend_approvals_standing.py).
    grace = make_user("grace")
    make_membership(grace, world.prod, "admin", can_approve=True)
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    with inline_mail(execute=True):
        access_request = create(world, duration=timedelta(hours=1))
    for approver in (world.approver, grace):
        with inline_mail(execute=True):
            services.access_request_approve(access_request=access_request, approver=approver)
    ApprovalPolicy.objects.filter(account=world.prod).update(approvals_required=1)
    with inline_mail(execute=True):
        activate(access_request)
    assert access_request.status == RequestStatus.ACTIVE
    Membership.objects.filter(user=world.approver, account=world.prod).delete()  # carol left the team
    mail.outbox.clear()
    with inline_mail(execute=True):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))
    assert _to("carol@example.test") == []
    assert len(_to(grace.email)) == 1
    mail.outbox.clear()
    # Back on the account (an approver again), she hears of the next one.
    make_membership(world.approver, world.prod, "admin", can_approve=True)
    with inline_mail(execute=True):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(minutes=30))
    (message,) = _to("carol@example.test")
    assert "3 h 30 min in all" in message.body


def test_an_extension_names_the_requester_on_one_line(world: World, inline_mail: Any) -> None:
    access_request = _active(world, inline_mail)
    User.objects.filter(pk=world.requester.pk).update(first_name="Al\nhttps://evil.example/approve")
    mail.outbox.clear()
    with inline_mail(execute=True):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    (message,) = mail.outbox
    lines = [line for line in message.body.split("\n") if not line.startswith("    ")]
    assert not any(line.startswith("https://evil") for line in lines), message.body


# --- nobody to ask ------------------------------------------------------------------------


def test_a_request_on_an_account_without_approvers_is_put_to_the_site_admins(world: World, inline_mail: Any) -> None:
    make_user("root", is_superuser=True, is_staff=True)
    make_user("gone", is_superuser=True, is_active=False)
    User.objects.filter(pk=make_user("nomail", is_superuser=True).pk).update(email="")
    with inline_mail(execute=True):
        access_request = services.access_request_create(
            requester=world.requester, account=world.staging, instances=[world.stage_web], reason="fix the disk"
        )
    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["root@example.test"], f"[Passport] Request #{access_request.pk} awaits your approval")
    ]


def test_a_site_admin_asking_on_an_account_without_approvers_is_not_asked_to_approve_it(
    world: World, inline_mail: Any
) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)
    make_membership(root, world.staging, "admin")
    make_user("admin2", is_superuser=True, is_staff=True)
    with inline_mail(execute=True):
        services.access_request_create(
            requester=root, account=world.staging, instances=[world.stage_web], reason="fix the disk"
        )
    assert [m.to for m in mail.outbox] == [["admin2@example.test"]]


def test_the_account_approvers_are_asked_not_the_site_admins_when_there_are_some(
    world: World, inline_mail: Any
) -> None:
    make_user("root", is_superuser=True, is_staff=True)
    with inline_mail(execute=True):
        create(world)
    assert [m.to for m in mail.outbox] == [["carol@example.test"]]
