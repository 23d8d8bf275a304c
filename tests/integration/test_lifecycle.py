"""The access-request lifecycle end to end on the real stack: PostgreSQL, Redis, a Celery
worker process with its scheduler, and devcloud whose local hosts run the scripts for real.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import AwsAccount, User
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.factories import make_membership, make_user
from tests.stack import Cloud, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]


@pytest.fixture
def people(prod: AwsAccount) -> tuple[User, User]:
    requester, approver = make_user("alice"), make_user("bob")
    make_membership(requester, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    return requester, approver


def _status(access_request: AccessRequest) -> str:
    access_request.refresh_from_db()
    return access_request.status


def _grant_states(access_request: AccessRequest) -> list[str]:
    return sorted(Grant.objects.filter(request=access_request).values_list("status", flat=True))


def test_inventory_sync_reads_ec2_and_ssm(prod: AwsAccount, aws: Cloud) -> None:
    instances = {instance.name: instance for instance in Instance.objects.filter(account=prod)}
    assert {"web-1", "db-1", "win-ad-1", "legacy-1", "offline-1"} <= set(instances)
    assert instances["web-1"].instance_id == aws.instance_id("web-1")
    assert instances["web-1"].ssm_managed and instances["web-1"].ping_status == "Online"
    assert instances["win-ad-1"].platform == Instance.Platform.WINDOWS
    assert instances["win-ad-1"].is_domain_controller
    assert instances["legacy-1"].agent_version == "2.3.100.0"
    assert services.instance_problem(instances["legacy-1"]) is not None
    assert instances["offline-1"].ping_status == "ConnectionLost"
    assert any(len(instance.network_interfaces) > 1 for instance in instances.values())
    assert LogbookEntry.objects.filter(action="inventory.synced", account_id=prod.account_id).exists()


def test_request_runs_from_approval_to_completion(worker: object, prod: AwsAccount, aws: Cloud, people) -> None:
    requester, approver = people
    targets = list(Instance.objects.filter(account=prod, name__in=["web-1", "db-1"]))
    access_request = services.access_request_create(
        requester=requester, account=prod, instances=targets, reason="Disk alarm on the database", ticket="INC-42"
    )
    username = access_request.grants.first().username  # type: ignore[union-attr]
    assert username not in aws.host_users("web-1")

    services.access_request_approve(access_request=access_request, approver=approver)
    wait_for(lambda: _status(access_request) == RequestStatus.ACTIVE, what="the request to become active")
    wait_for(lambda: _grant_states(access_request) == ["ready", "ready"], what="both grants ready")
    access_request.refresh_from_db()
    # The clock started when access was granted, not when it was asked for.
    assert access_request.activated_at is not None and access_request.activated_at > access_request.created_at
    assert access_request.expires_at == access_request.activated_at + timedelta(hours=1)
    for host in ("web-1", "db-1"):
        assert username in aws.host_users(host)
        groups = aws.run_in_host(host, ["id", "-nG", username]).stdout.split()
        assert "passport-users" in groups
    # Both Linux hosts of the request: one Run Command, and each host took its own grant from it.
    grants = list(access_request.grants.select_related("instance"))
    assert len({tuple(grant.command_ids) for grant in grants}) == 1 and len(grants[0].command_ids) == 1
    for grant in grants:
        keys = aws.run_in_host(grant.instance.name, ["cat", f"/home/{username}/.ssh/authorized_keys"]).stdout
        assert set(re.findall(r'principals="grant-([0-9a-f-]{36})"', keys)) == {str(grant.uid)}

    services.access_request_extend(access_request=access_request, actor=requester, by=timedelta(hours=2))
    assert access_request.total_duration == timedelta(hours=3)

    services.access_request_complete(access_request=access_request, actor=requester)
    wait_for(lambda: _status(access_request) == RequestStatus.COMPLETED, what="cleanup to finish")
    assert _grant_states(access_request) == ["removed", "removed"]
    for host in ("web-1", "db-1"):
        assert username not in aws.host_users(host)

    actions = list(
        LogbookEntry.objects.filter(request_id=access_request.pk).order_by("id").values_list("action", flat=True)
    )
    for expected in (
        "request.created",
        "request.approved",
        "request.provisioning",
        "grant.provisioning",
        "grant.ready",
        "request.active",
        "request.extended",
        "request.completing",
        "grant.removed",
        "request.completed",
    ):
        assert expected in actions, f"{expected} missing from {actions}"
    assert actions.index("request.created") < actions.index("request.active") < actions.index("request.completed")
    call_command("verify_logbook")


def test_scheduler_expires_a_request_and_removes_its_users(
    worker: object, prod: AwsAccount, aws: Cloud, people
) -> None:
    requester, approver = people
    web = Instance.objects.get(account=prod, name="web-1")
    access_request = services.access_request_create(
        requester=requester, account=prod, instances=[web], reason="Expiry check", duration=timedelta(minutes=15)
    )
    services.access_request_approve(access_request=access_request, approver=approver)
    wait_for(lambda: _status(access_request) == RequestStatus.ACTIVE, what="activation")
    username = access_request.grants.get().username
    assert username in aws.host_users("web-1")
    # Jump the request's end to just ahead (the worker runs on the real clock); the scheduler must notice.
    due = timezone.now() + timedelta(seconds=2)
    AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=due)
    wait_for(lambda: _status(access_request) == RequestStatus.EXPIRED, timeout=45, what="expiry by the scheduler")
    access_request.refresh_from_db()
    assert access_request.ended_at is not None
    assert access_request.ended_at - due < timedelta(seconds=30)
    assert username not in aws.host_users("web-1")
    assert LogbookEntry.objects.filter(request_id=access_request.pk, action="request.expiring", actor=None).exists()


def test_a_name_taken_by_someone_else_fails_cleanly_and_is_left_alone(
    worker: object, prod: AwsAccount, aws: Cloud, people
) -> None:
    requester, approver = people
    db = Instance.objects.get(account=prod, name="db-1")
    access_request = services.access_request_create(requester=requester, account=prod, instances=[db], reason="x")
    username = access_request.grants.get().username
    # An account of the same shape that Passport did not create, already on the host.
    assert aws.run_in_host("db-1", ["useradd", "--no-create-home", username]).returncode == 0
    services.access_request_approve(access_request=access_request, approver=approver)
    wait_for(lambda: _status(access_request) == RequestStatus.FAILED, what="the request to fail")
    wait_for(lambda: _grant_states(access_request) == ["removed"], what="cleanup of the failed grant")
    grant = access_request.grants.get()
    entries = list(
        LogbookEntry.objects.filter(request_id=access_request.pk).order_by("id").values_list("action", "detail")
    )
    assert "not a Passport user" in grant.last_error, entries
    assert grant.attempts == 1, entries
    assert username in aws.host_users("db-1"), "an account without the marker group must never be removed"
    assert LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.failed").exists()
    aws.run_in_host("db-1", ["userdel", username])


def test_unknown_user_cannot_be_provisioned_twice_by_duplicate_tasks(
    worker: object, prod: AwsAccount, aws: Cloud, people
) -> None:
    """A duplicate delivery of the same task runs the script once."""
    from workers import tasks

    requester, approver = people
    web = Instance.objects.get(account=prod, name="web-1")
    access_request = services.access_request_create(requester=requester, account=prod, instances=[web], reason="dup")
    services.access_request_approve(access_request=access_request, approver=approver)
    grant = access_request.grants.get()
    for _ in range(3):
        tasks.provision_grant.delay(grant.pk)
    wait_for(lambda: _status(access_request) == RequestStatus.ACTIVE, what="activation")
    grant.refresh_from_db()
    story = list(
        LogbookEntry.objects.filter(request_id=access_request.pk)
        .order_by("id")
        .values_list("created_at", "action", "detail")
    )
    assert grant.attempts == 1, (grant.last_error, story)
    assert grant.status == GrantStatus.READY
    assert LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.provisioning").count() == 1
    services.access_request_complete(access_request=access_request, actor=requester)
    wait_for(lambda: _status(access_request) == RequestStatus.COMPLETED, what="completion")
