"""Builders for test data: personas, accounts and instances, built the same way everywhere.

People, accounts and memberships are the world a test starts from, not grants it makes: they are
built inside ``changes_recorded_elsewhere``, so the Logbook starts without a ``person.changed``,
``account.changed`` or ``membership.changed`` for each (accounts.change_trail;
tests/accounts/test_grants_on_record.py and test_change_trail*.py check those, with saves of their own)."""

from __future__ import annotations

from itertools import count
from typing import Any

from django.utils import timezone

from accounts.change_trail import changes_recorded_elsewhere
from accounts.models import AwsAccount, Membership, User
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus

_seq = count(1)


def make_user(username: str, **extra: Any) -> User:
    with changes_recorded_elsewhere():
        return User.objects.create_user(
            username=username, email=f"{username}@example.test", password="pw-" + username, **extra
        )


def make_account(account_id: str = "111111111111", name: str = "Acme Production") -> AwsAccount:
    with changes_recorded_elsewhere():
        return AwsAccount.objects.create(
            account_id=account_id,
            name=name,
            regions=["us-east-1"],
            role_arn=f"arn:aws:iam::{account_id}:role/PassportPortal",
        )


def make_membership(user: User, account: AwsAccount, role: str = "admin", *, can_approve: bool = False) -> Membership:
    with changes_recorded_elsewhere():
        return Membership.objects.create(
            user=user,
            account=account,
            role=role,
            can_approve=can_approve,
            principal_arn=f"arn:aws:iam::{account.account_id}:user/{user.username}",
        )


def make_instance(account: AwsAccount, name: str | None = None, **extra: Any) -> Instance:
    n = next(_seq)
    fields: dict[str, Any] = {
        "instance_id": f"i-{n:017x}",
        "region": "us-east-1",
        "name": name or f"host-{n}",
        "platform": Instance.Platform.LINUX,
        "state": "running",
        "ssm_managed": True,
        "ping_status": "Online",
        "agent_version": "3.3.1142.0",
    }
    fields.update(extra)
    return Instance.objects.create(account=account, **fields)


def make_active_request(requester: User, account: AwsAccount, instance: Instance) -> AccessRequest:
    """``requester``'s request for ``instance``, made through the service, then set active with its
    grant ready in the database (nothing provisioned): live access for tests about ending it."""
    access_request = services.access_request_create(
        requester=requester, account=account, instances=[instance], reason="deploy"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    return access_request
