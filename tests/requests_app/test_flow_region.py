"""A region taken off an account after a request was made: the request is not approved, not
provisioned, and a grant waiting to retry there fails for good, each refusal naming the region;
what was already made there is still removed (``test_region_taken_off`` covers the rest)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import FleetError
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.services.provisioning import Outcome
from tests.conftest import World
from tests.fakes.fleet import FakeFleet
from tests.requests_app.test_provisioning import actions, retry_when_due
from tests.requests_app.test_region_taken_off import _region_refusal, _take_us_east_1_off

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]


def _asked(world: World, *instances: Any) -> AccessRequest:
    return services.access_request_create(
        requester=world.requester,
        account=world.prod,
        instances=list(instances) or [world.web],
        reason="patch",
        admin_rights=True,
    )


def _approval_refusal(world: World) -> str:
    return f"{_region_refusal(world)} It cannot be approved; reject it instead."


def test_no_user_is_made_on_an_instance_of_a_region_taken_off_after_the_request(world: World, fleet: FakeFleet) -> None:
    access_request = _asked(world)
    # The site admin takes us-east-1 off the account while the request waits.
    _take_us_east_1_off(world, fleet)
    access_request = AccessRequest.objects.get(pk=access_request.pk)

    approved_or_refused = True
    try:
        services.access_request_approve(access_request=access_request, approver=world.approver)
    except Exception:
        approved_or_refused = False
    grant_ids = services.access_request_begin_provisioning(request_id=access_request.pk)
    for grant_id in grant_ids:
        services.grant_provision(grant_id=grant_id)

    created_there = [call for call in fleet.calls if call.get("instance_id") == world.web.instance_id]
    status = AccessRequest.objects.get(pk=access_request.pk).status
    ready = list(Grant.objects.filter(request=access_request, status=GrantStatus.READY).values_list("pk", flat=True))
    assert not created_there, (
        f"approve {'accepted' if approved_or_refused else 'refused'}; request {status}; grants ready {ready}; "
        f"Run Command sent to {world.web.instance_id} in a region no longer managed"
    )
    assert status != RequestStatus.ACTIVE


def test_the_approval_is_refused_with_the_region_named(
    world: World, fleet: FakeFleet, queued: list[tuple[str, int]]
) -> None:
    access_request = _asked(world)
    _take_us_east_1_off(world, fleet)

    with pytest.raises(RequestRuleError) as caught:
        services.access_request_approve(access_request=access_request, approver=world.approver)

    assert caught.value.code == "conflict"
    assert caught.value.errors == {"__all__": [_approval_refusal(world)]}
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING and access_request.decided_by is None
    assert not [name for name, _ in queued if name == "begin_provisioning"]
    denied = LogbookEntry.objects.get(action="request.approve_denied", request_id=access_request.pk)
    assert denied.actor == world.approver and denied.detail["denied"] == caught.value.errors
    # The approver can reject it.
    services.access_request_reject(access_request=access_request, approver=world.approver, note="Region gone.")
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.REJECTED


def test_the_pages_and_the_api_offer_reject_only_and_say_why(world: World, fleet: FakeFleet, client: Client) -> None:
    access_request = _asked(world)
    _take_us_east_1_off(world, fleet)
    client.force_login(world.approver)
    refusal = _approval_refusal(world)
    approve = f'action="{reverse("requests:action", args=[access_request.pk, "approve"])}"'
    reject = f'href="{reverse("requests:action", args=[access_request.pk, "reject"])}"'

    page = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    assert approve not in page and reject in page
    assert 'data-testid="approve-refusal"' in page and refusal in page
    queue = client.get(reverse("requests:approvals")).content.decode()
    row = queue.split(f'data-request="{access_request.pk}"')[1].split("</tr>")[0]
    assert approve not in row and reject in row and refusal in row

    assert client.get(f"/api/requests/{access_request.pk}/").json()["actions"] == ["reject"]
    response = client.post(f"/api/requests/{access_request.pk}/approve/", {}, content_type="application/json")
    assert response.status_code == 409 and response.json() == {"detail": refusal}
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.PENDING


def test_a_request_approved_before_is_rejected_when_its_provisioning_starts(world: World, fleet: FakeFleet) -> None:
    access_request = _asked(world, world.web, world.db)
    services.access_request_approve(access_request=access_request, approver=world.approver)
    _take_us_east_1_off(world, fleet)

    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []

    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.REJECTED and access_request.decided_by is None
    assert "us-east-1" in access_request.decision_note
    assert set(access_request.grants.values_list("status", flat=True)) == {GrantStatus.REMOVED}
    rejected = LogbookEntry.objects.get(action="request.rejected", request_id=access_request.pk)
    db_refusal = (
        f"{world.db.instance_id} (db-1) is in us-east-1, a region Passport no longer manages in Acme Production."
    )
    assert rejected.detail["why"] == [_region_refusal(world), db_refusal]
    assert rejected.detail["regions"] == ["us-east-1"] and rejected.detail["via"] == "provisioning"
    assert "request.provisioning" not in actions(access_request)
    assert fleet.calls == [] and fleet.batch_calls == []


def test_a_grant_waiting_to_retry_fails_for_good_and_what_exists_is_still_removed(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    access_request = _asked(world, world.web, world.db)
    services.access_request_approve(access_request=access_request, approver=world.approver)
    services.access_request_begin_provisioning(request_id=access_request.pk)
    web = Grant.objects.get(request=access_request, instance=world.web)
    db = Grant.objects.get(request=access_request, instance=world.db)
    assert services.grant_provision(grant_id=web.pk) == Outcome()
    fleet.will(FleetError("Throttled"))
    assert services.grant_provision(grant_id=db.pk).retry_in
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE
    _take_us_east_1_off(world, fleet)

    assert retry_when_due(time_machine, db.pk) == Outcome()  # not tried again

    assert len(fleet.calls) == 2  # the two first attempts; nothing since
    db.refresh_from_db()
    assert db.status == GrantStatus.FAILED and db.attempts == 2
    assert "us-east-1, a region Passport no longer manages" in db.last_error and "Nothing was sent" in db.last_error
    taken_off = LogbookEntry.objects.get(action="grant.region_taken_off", request_id=access_request.pk)
    assert taken_off.detail["region"] == "us-east-1" and taken_off.detail["username"] == db.username
    assert actions(access_request)[-2:] == ["grant.region_taken_off", "grant.failed"]
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE  # web-1's grant is live

    # Removal of what exists there is never refused: both grants' users are removed, in us-east-1.
    services.access_request_complete(access_request=access_request, actor=world.requester)
    for grant in (web, db):
        assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REMOVING
        services.grant_deprovision(grant_id=grant.pk)
        assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REMOVED
    assert [(call["instance_id"], call["region"]) for call in fleet.calls[2:]] == [
        (world.web.instance_id, "us-east-1"),
        (world.db.instance_id, "us-east-1"),
    ]
