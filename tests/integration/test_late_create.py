"""A create sent while the host's SSM Agent was away, and never cancelled (its worker was killed
waiting on it), is delivered by AWS once the agent is back, if that is within the command's
total timeout: possibly after the grant's removal ran. The removal's tombstone makes it exit 6
under the host's lock: it must not leave the user behind.

devcloud delivers a command to an agent back from away when the command is next read; a command
sent since (the removal) runs at once, before it, as nothing in AWS orders the two either.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils import timezone

from accounts.models import AwsAccount
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services import provisioning
from tests.devcloud.helpers import wait_for as wait_for_command
from tests.factories import make_membership, make_user
from tests.integration.linux_host import host_sshd
from tests.sshd import LoopbackSshd
from tests.stack import Cloud, WorkerProcess, account_admin_client, tag_as_account_admin, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db"), pytest.mark.timeout(300)]

HOST = "web-1"  # host_sshd's


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    yield from host_sshd(aws, "late-create")


def _agent(aws: Cloud, prod: AwsAccount, status: str) -> None:
    tag_as_account_admin(aws, prod.account_id, HOST, {"devcloud:ping-status": status})


@pytest.fixture
def agent_back_at_the_end(aws: Cloud, prod: AwsAccount) -> Iterator[None]:
    try:
        yield
    finally:
        _agent(aws, prod, "Online")


def _pending_create(aws: Cloud, target: Instance, request_id: int) -> str | None:
    """The id of the grant's create, Pending in devcloud (read while the agent is away: not delivered)."""
    commands = aws.devcloud.runtime.commands.commands(
        target.account.account_id, target.region, instance_id=target.instance_id
    )
    return next(
        (c["CommandId"] for c in commands if c["Comment"].startswith(f"Passport request {request_id}: create ")),
        None,
    )


def test_a_create_delivered_after_the_grants_removal_leaves_no_user(
    worker: WorkerProcess, prod: AwsAccount, aws: Cloud, sshd: LoopbackSshd, agent_back_at_the_end: None
) -> None:
    requester, approver = make_user("late-requester"), make_user("late-approver")
    make_membership(requester, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    target = Instance.objects.get(account=prod, name=HOST)
    access_request = services.access_request_create(
        requester=requester, account=prod, instances=[target], reason="My create arrives late"
    )
    _agent(aws, prod, "ConnectionLost")  # SendCommand is taken; the create stays Pending
    services.access_request_approve(access_request=access_request, approver=approver)
    command_id = wait_for(
        lambda: _pending_create(aws, target, access_request.pk), timeout=30, what="the worker to send the create"
    )
    grant = Grant.objects.get(request=access_request)
    # The worker dies waiting on it: nothing cancels the command, which AWS keeps for its agent.
    worker.kill()
    try:
        services.access_request_complete(
            access_request=AccessRequest.objects.get(pk=access_request.pk), actor=requester
        )
        wait_for(
            lambda: Grant.objects.filter(pk=grant.pk, lease_until__lt=timezone.now()).exists(),
            timeout=30,
            what="the dead worker's lease to run out",
        )
        _agent(aws, prod, "Online")  # the agent is back, well within the create's timeout

        # The removal runs first (the create has not been picked up yet): nothing to remove, a tombstone left.
        provisioning.grant_deprovision(grant_id=grant.pk)
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REMOVED, grant.last_error
        assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED

        # Then the agent picks the create up: it finds the grant removed and makes nothing.
        ssm = account_admin_client(aws, prod.account_id, "ssm", region=target.region)
        invocation, seen = wait_for_command(ssm, command_id, target.instance_id, timeout=60)
        assert "InProgress" in seen or invocation["ExecutionStartDateTime"], seen  # it did run, late
        assert (invocation["Status"], invocation["ResponseCode"]) == ("Failed", 6), invocation
        assert f"grant {grant.uid} was already removed" in invocation["StandardErrorContent"]
        assert grant.username not in aws.host_users(HOST)
        assert sshd.run(f"id {grant.username} >/dev/null 2>&1 || echo absent").strip() == "absent"
        assert sshd.run(f"ls /etc/sudoers.d/ | grep -c -- '^passport-{grant.username}-' || true").strip() == "0"
        assert sshd.run(f"test -e /home/{grant.username} || echo absent").strip() == "absent"
    finally:
        worker.start()
