"""Shared set-ups of the accounts tests."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import ApprovalPolicy, RequestApproval, User
from core.errors import NotAllowed
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from workers import tasks


@pytest.fixture(autouse=True)
def reset_mail_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The password-reset mail's task (accounts.password_reset_mail) run in this process, as a worker
    would, once the page queues it: the tests of the mail read it from the outbox. The tests of the
    queueing itself (test_password_reset_queued) leave it on the broker instead."""
    task = tasks.send_password_reset_mail
    monkeypatch.setattr(task, "delay", lambda *args: task.apply(args).get())


@pytest.fixture
def no_workers(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests made and decided in-process: no IAM check, no provisioning or notification queued; fast passwords."""
    settings.PASSPORT_IAM_CHECK = False
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr(tasks.begin_provisioning, "delay", lambda request_id: None)
    monkeypatch.setattr(tasks.send_notification, "delay", lambda kind, request_id: None)


def approved_once_by_one_person(world: World, first: User, second: User) -> AccessRequest:
    """A request on prod that needs two approvals, approved by ``first`` and then refused to ``second``,
    the same person under another user: it still waits, with ``first``'s approval alone counted."""
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="rotate the logs"
    )

    services.access_request_approve(access_request=access_request, approver=first)
    with pytest.raises(NotAllowed) as caught:
        services.access_request_approve(access_request=access_request, approver=second)

    assert str(caught.value) == (
        f"You have approved request #{access_request.pk} already, as {first.username} (the same email); "
        "it needs its next approval from another person."
    )
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    assert list(RequestApproval.objects.values_list("approver_id", flat=True)) == [first.pk]
    return access_request
