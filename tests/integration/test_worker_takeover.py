"""A worker killed (kill -9) mid-provisioning loses its claim within the heartbeat lease, and the
next worker takes the grant over; while it lived, its claim outlasted the lease, renewed.

The script is kept running by devcloud itself: the instance's agent is made unreachable after
the request was approved, so the command stays Pending and the worker waits on it, as it would
for a slow host. The stack's worker runs with PASSPORT_LEASE_SECONDS=6 and a sweep every 3 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AwsAccount
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.factories import make_membership, make_user
from tests.stack import Cloud, WorkerProcess, tag_as_account_admin, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db"), pytest.mark.timeout(300)]

LEASE_SECONDS = 6  # tests/stack.py
HOST = "db-1"


def _agent(aws: Cloud, prod: AwsAccount, status: str) -> None:
    """Tag the host's agent ``status`` in devcloud, as the account's administrator."""
    tag_as_account_admin(aws, prod.account_id, HOST, {"devcloud:ping-status": status})


@pytest.fixture
def unreachable_agent(aws: Cloud, prod: AwsAccount) -> Iterator[None]:
    try:
        yield
    finally:
        _agent(aws, prod, "Online")


def test_a_worker_killed_mid_provisioning_loses_its_claim_within_the_lease(
    worker: WorkerProcess, prod: AwsAccount, aws: Cloud, unreachable_agent: None
) -> None:
    requester, approver = make_user("takeover-requester"), make_user("takeover-approver")
    make_membership(requester, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    target = Instance.objects.get(account=prod, name=HOST)
    access_request = services.access_request_create(
        requester=requester, account=prod, instances=[target], reason="Kill the worker under me"
    )
    _agent(aws, prod, "ConnectionLost")  # the create script will wait, Pending
    services.access_request_approve(access_request=access_request, approver=approver)
    grant = wait_for(
        lambda: Grant.objects.filter(request=access_request, status=GrantStatus.PROVISIONING, attempts=1).first(),
        timeout=30,
        what="the worker to claim the grant",
    )
    first_lease = grant.lease_until

    # Alive: two leases later the claim is still the first worker's, renewed, not handed out again.
    time.sleep(2 * LEASE_SECONDS)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PROVISIONING and grant.attempts == 1
    assert grant.lease_until is not None and grant.lease_until > first_lease

    worker.kill()
    killed_at = timezone.now()
    # The claim the dead worker leaves lasts one heartbeat lease at most from its last renewal,
    # not the fixed lease of before (the Run Command timeout + 30 s slack + margin: 53 s here).
    grant.refresh_from_db()
    assert grant.lease_until is not None
    assert grant.lease_until <= killed_at + timedelta(seconds=LEASE_SECONDS), (grant.lease_until, killed_at)
    _agent(aws, prod, "Online")
    worker.start()

    wait_for(
        lambda: Grant.objects.filter(pk=grant.pk, attempts=2).exists(),
        timeout=60,
        what="another worker to take the grant over",
    )
    wait_for(
        lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE,
        timeout=60,
        what="the request to become active",
    )
    grant.refresh_from_db()
    assert grant.status == GrantStatus.READY
    services.access_request_complete(access_request=AccessRequest.objects.get(pk=access_request.pk), actor=requester)
    wait_for(
        lambda: not Grant.objects.filter(pk=grant.pk).exclude(status=GrantStatus.REMOVED).exists(),
        timeout=60,
        what="the grant removed",
    )
    assert grant.username not in aws.host_users(HOST)
