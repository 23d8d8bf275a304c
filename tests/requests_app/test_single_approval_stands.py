"""An approval under one required (the default) must still stand when provisioning starts, as
each of several must: one whose approver lost approving there, their membership, or their Passport
account since is discounted in the Logbook at once, and provisioning sends the request back to
pending (``request.back_to_pending``) for an approver who still decides, instead of acting on it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from accounts.models import ApprovalPolicy, Membership, User
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, GrantStatus, RequestStatus
from tests.accounts.test_approvals_standing import REMOVALS, second  # noqa: F401
from tests.audit.admin_forms import superuser_client
from tests.conftest import World
from tests.requests_app.test_provisioning import actions, reload

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


def _approved(world: World) -> AccessRequest:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="one approval"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    # Approved; provisioning is queued, not yet started (a busy or restarting worker).
    assert reload(access_request).status == RequestStatus.APPROVED
    return access_request


@pytest.mark.parametrize(("remove", "why"), REMOVALS)
def test_a_single_approval_that_no_longer_stands_goes_back_to_pending_at_provisioning(
    world: World, remove: Callable[[World, Client], None], why: str
) -> None:
    access_request = _approved(world)
    client, root = superuser_client()
    remove(world, client)

    discounted = LogbookEntry.objects.get(action="request.approval_discounted", request_id=access_request.pk)
    assert discounted.actor == root
    assert (discounted.detail["why"], discounted.detail["approvals"], discounted.detail["required"]) == (why, 0, 1)

    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []

    access_request = reload(access_request)
    assert access_request.status == RequestStatus.PENDING
    assert access_request.decided_by is None
    assert "request.provisioning" not in actions(access_request)
    assert not access_request.grants.exclude(status=GrantStatus.PENDING).exists()
    back = LogbookEntry.objects.get(action="request.back_to_pending", request_id=access_request.pk)
    assert back.detail["via"] == "provisioning"
    assert (back.detail["approvals"], back.detail["required"]) == (0, 1)
    assert why in back.detail["why"]


def test_back_to_pending_it_is_provisioned_once_an_approver_who_still_decides_approves(
    world: World,
    second: User,  # noqa: F811
) -> None:
    access_request = _approved(world)
    User.objects.filter(pk=world.approver.pk).update(is_active=False)  # no signal: provisioning asks itself
    services.access_request_begin_provisioning(request_id=access_request.pk)
    assert reload(access_request).status == RequestStatus.PENDING

    services.access_request_approve(access_request=reload(access_request), approver=second)
    assert services.access_request_begin_provisioning(request_id=access_request.pk)
    assert reload(access_request).status == RequestStatus.PROVISIONING


def test_a_single_approval_that_still_stands_is_provisioned(world: World) -> None:
    access_request = _approved(world)

    grant_ids = services.access_request_begin_provisioning(request_id=access_request.pk)

    assert len(grant_ids) == 1
    assert reload(access_request).status == RequestStatus.PROVISIONING
    assert "request.back_to_pending" not in actions(access_request)
    assert "request.approval_discounted" not in actions(access_request)


def test_another_recorded_approval_that_stands_keeps_it_approved_when_the_decider_lost_approving(
    world: World,
    second: User,  # noqa: F811
) -> None:
    """Two approved under two required; the policy then asks for one, and the decider loses approving:
    the other recorded approval still stands, 1 of 1, so provisioning goes on."""
    policy = ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="two approvals"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    services.access_request_approve(access_request=reload(access_request), approver=second)
    assert reload(access_request).decided_by_id == second.pk
    policy.approvals_required = 1
    policy.save()
    Membership.objects.filter(user=second, account=world.prod).update(can_approve=False)

    services.access_request_begin_provisioning(request_id=access_request.pk)
    assert reload(access_request).status == RequestStatus.PROVISIONING
    assert not LogbookEntry.objects.filter(action="request.back_to_pending", request_id=access_request.pk)
