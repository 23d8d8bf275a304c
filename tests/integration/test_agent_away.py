"""An instance whose SSM Agent is away (stopped, restarting) makes AWS refuse SendCommand with
InvalidInstanceId: the grant is retried with its backoff, not failed, and is created once the
agent is back. devcloud refuses so for an instance tagged ``devcloud:offline-refuses-commands``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from accounts.models import AwsAccount
from requests_app import services
from requests_app.models import Grant, GrantStatus, Instance, RequestStatus
from requests_app.services import provisioning
from tests.factories import make_membership, make_user
from tests.stack import Cloud, tag_as_account_admin

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db"), pytest.mark.timeout(120)]

HOST = "web-1"


def _tag(aws: Cloud, prod: AwsAccount, **tags: str) -> None:
    """Tag the host in devcloud, as the account's administrator."""
    tag_as_account_admin(aws, prod.account_id, HOST, tags)


@pytest.fixture
def agent_away(aws: Cloud, prod: AwsAccount) -> Iterator[None]:
    _tag(aws, prod, **{"devcloud:ping-status": "ConnectionLost", "devcloud:offline-refuses-commands": "true"})
    try:
        yield
    finally:
        _tag(aws, prod, **{"devcloud:ping-status": "Online", "devcloud:offline-refuses-commands": "false"})


def test_a_grant_refused_while_the_agent_is_away_is_created_when_it_is_back(
    prod: AwsAccount, aws: Cloud, agent_away: None, time_machine: Any
) -> None:
    requester, approver = make_user("away-requester"), make_user("away-approver")
    make_membership(requester, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    target = Instance.objects.get(account=prod, name=HOST)
    access_request = services.access_request_create(
        requester=requester, account=prod, instances=[target], reason="The agent restarts under me"
    )
    services.access_request_approve(access_request=access_request, approver=approver)
    (grant_id,) = provisioning.access_request_begin_provisioning(request_id=access_request.pk)

    refused = provisioning.grant_provision(grant_id=grant_id)
    grant = Grant.objects.get(pk=grant_id)
    assert grant.status == GrantStatus.PENDING and refused.retry_in, grant.last_error
    assert "InvalidInstanceId" in grant.last_error and "not answering" in grant.last_error

    _tag(aws, prod, **{"devcloud:ping-status": "Online"})  # the agent is back
    time_machine.move_to(grant.next_attempt_at)  # its retry, once the backoff is over
    provisioning.grant_provision(grant_id=grant_id)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.READY and grant.attempts == 2, grant.last_error
    assert grant.username in aws.host_users(HOST)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.ACTIVE

    services.access_request_complete(access_request=access_request, actor=requester)
    provisioning.grant_deprovision(grant_id=grant_id)
    assert grant.username not in aws.host_users(HOST)
