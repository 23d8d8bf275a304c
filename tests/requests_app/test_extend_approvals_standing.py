"""An active request whose approvals no longer stand is not extended (README: "exactly what was
approved"): fewer of its approvals count now than the account's policy asks for (its approver
deactivated, their approving or membership taken away, or now the requester in person after an email
change), by the rule that sends an approved request back to pending when provisioning starts
(``selectors.access_request_approvals_short``). The refusal says why and that a new request is the
way, on the page, in the API and in the Logbook. The access already granted runs its course; a
request an automatic rule approved keeps its rule's cap."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApprovalPolicy, Membership, User
from accounts.signals import memberships_changed
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import selectors, services
from requests_app.models import AccessRequest, RequestStatus
from tests.accounts.test_approvals_standing import REMOVALS, second  # noqa: F401
from tests.audit.admin_forms import superuser_client
from tests.conftest import World
from tests.requests_app.test_account_expiry import active_request

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

NEW_REQUEST = "Ask for the time you need in a new request."


def _active(world: World) -> AccessRequest:
    access_request, _ = active_request(world, world.web, hours=1)
    return AccessRequest.objects.select_related("account").get(pk=access_request.pk)


def _refused_to_extend(access_request: AccessRequest, user: User, why: str) -> None:
    """Refused, by the page's check and the service, saying why; the request and its end unchanged."""
    before = access_request.expires_at
    check = selectors.access_request_extend_check(access_request=access_request, user=user)
    assert not check and why in check.reason and NEW_REQUEST in check.reason, check
    with pytest.raises(RequestRuleError, match=why):
        services.access_request_extend(access_request=access_request, actor=user, by=timedelta(hours=11))
    access_request.refresh_from_db()
    assert access_request.total_duration == timedelta(hours=1)
    assert access_request.expires_at == before
    denied = LogbookEntry.objects.get(action="request.extend_denied", request_id=access_request.pk)
    assert why in str(denied.detail)


def test_extension_refused_once_the_only_approval_no_longer_stands(world: World) -> None:
    """The review's case: the admin takes carol's approving away as accounts.admin does."""
    access_request = _active(world)
    before = list(
        Membership.objects.filter(user=world.approver, account=world.prod).values_list("user_id", "account_id")
    )
    Membership.objects.filter(user=world.approver, account=world.prod).update(can_approve=False)
    memberships_changed.send(sender=Membership, memberships=before, actor=None, via="admin")

    _refused_to_extend(access_request, world.requester, "carol no longer approves requests for Acme Production.")


@pytest.mark.parametrize(("remove", "why"), REMOVALS)
def test_extension_refused_after_each_way_an_approval_stops_counting(
    world: World, remove: Callable[[World, Client], None], why: str
) -> None:
    access_request = _active(world)
    expires_at = access_request.expires_at
    client, _ = superuser_client()
    remove(world, client)

    # The access already granted runs its course: the loss does not end or shorten it.
    access_request.refresh_from_db()
    assert (access_request.status, access_request.expires_at) == (RequestStatus.ACTIVE, expires_at)
    _refused_to_extend(access_request, world.requester, why)


def test_extension_refused_once_the_approver_is_the_requester_in_person(world: World) -> None:
    access_request = _active(world)
    world.approver.email = world.requester.email
    world.approver.save(update_fields=["email"])

    _refused_to_extend(access_request, world.requester, "carol is now the same person as the requester")


def test_of_two_approvals_one_lost_is_refused_and_both_standing_extend(
    world: World,
    second: User,  # noqa: F811
) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    made = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="two approvals"
    )
    services.access_request_approve(access_request=made, approver=world.approver)
    services.access_request_approve(access_request=made, approver=second)
    (grant_id,) = services.access_request_begin_provisioning(request_id=made.pk)
    services.grant_provision(grant_id=grant_id)
    access_request = AccessRequest.objects.select_related("account").get(pk=made.pk)
    assert access_request.status == RequestStatus.ACTIVE

    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    assert access_request.total_duration == timedelta(hours=2)

    User.objects.filter(pk=second.pk).update(is_active=False)
    check = selectors.access_request_extend_check(access_request=access_request, user=world.requester)
    assert not check and "grace has been deactivated since." in check.reason and "1 stands" in check.reason
    with pytest.raises(RequestRuleError, match="grace has been deactivated since"):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    access_request.refresh_from_db()
    assert access_request.total_duration == timedelta(hours=2)


def test_an_approval_that_still_stands_extends_as_before(world: World, queued: Any) -> None:
    access_request = _active(world)
    expires_at = access_request.expires_at
    assert expires_at is not None
    assert selectors.access_request_extend_check(access_request=access_request, user=world.requester)

    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=11))

    access_request.refresh_from_db()
    assert access_request.total_duration == timedelta(hours=12)
    assert access_request.expires_at == expires_at + timedelta(hours=11)
    assert LogbookEntry.objects.filter(action="request.extended", request_id=access_request.pk).exists()


def test_an_automatic_approval_keeps_its_rules_cap(world: World) -> None:
    """No person's approval to stand: the rule's cap alone, as before."""
    ApprovalPolicy.objects.create(
        account=world.prod,
        auto_approve=True,
        auto_approve_requires_ticket=False,
        auto_approve_max_duration=timedelta(hours=3),
    )
    world.requester.identity_store = User.IdentityStore.INTERNAL
    world.requester.save(update_fields=["identity_store"])
    made = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="by the rule", ticket="CHG-7"
    )
    assert made.status == RequestStatus.APPROVED and made.decided_by is None
    (grant_id,) = services.access_request_begin_provisioning(request_id=made.pk)
    services.grant_provision(grant_id=grant_id)
    access_request = AccessRequest.objects.select_related("account").get(pk=made.pk)
    assert access_request.status == RequestStatus.ACTIVE and access_request.approved_automatically

    assert access_request.total_duration == timedelta(hours=1)
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))
    assert access_request.total_duration == timedelta(hours=3)
    with pytest.raises(RequestRuleError, match="approves at most 3 h per request that way"):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(minutes=15))


def test_the_api_refuses_with_the_reason(world: World) -> None:
    access_request = _active(world)
    User.objects.filter(pk=world.approver.pk).update(is_active=False)
    client = APIClient()
    client.force_authenticate(world.requester)

    assert "extend" not in client.get(f"/api/requests/{access_request.pk}/").json()["actions"]
    listed = {row["id"]: row["actions"] for row in client.get("/api/requests/").json()["results"]}
    assert "extend" not in listed[access_request.pk]
    response = client.post(f"/api/requests/{access_request.pk}/extend/", {"minutes": 60}, format="json")

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "carol has been deactivated since." in detail and NEW_REQUEST in detail
    access_request.refresh_from_db()
    assert access_request.total_duration == timedelta(hours=1)


def test_the_page_shows_the_reason_instead_of_the_extend_form(world: World) -> None:
    access_request = _active(world)
    client = Client()
    client.force_login(world.requester)
    page = reverse("requests:detail", args=[access_request.pk])
    assert 'data-testid="extend-form"' in client.get(page).content.decode()

    User.objects.filter(pk=world.approver.pk).update(is_active=False)
    html = client.get(page).content.decode()
    assert 'data-testid="extend-form"' not in html
    assert 'data-testid="extend-refusal"' in html
    assert "carol has been deactivated since." in html and NEW_REQUEST in html

    # A form posted from before is refused with the same reason.
    response = client.post(reverse("requests:action", args=[access_request.pk, "extend"]), {"minutes": 60})
    assert response.status_code == 302
    shown = [str(message) for message in get_messages(response.wsgi_request)]
    assert any("carol has been deactivated since." in message for message in shown), shown
    access_request.refresh_from_db()
    assert access_request.total_duration == timedelta(hours=1)


def test_more_approvals_asked_for_since_is_refused_as_provisioning_would_be(world: World) -> None:
    """The same rule as at provisioning's start: one approval given, two asked for now."""
    access_request = _active(world)
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)

    _refused_to_extend(access_request, world.requester, "Acme Production now asks for 2 approvals; 1 stands.")


def test_the_list_weighs_every_rows_approvals_in_the_same_queries(world: World, second: User) -> None:  # noqa: F811
    """The API's list asks the same rule of each row, in a few queries whatever their number."""
    client = APIClient()
    client.force_authenticate(world.requester)

    def listed() -> dict[int, list[str]]:
        return {row["id"]: row["actions"] for row in client.get("/api/requests/").json()["results"]}

    first = _active(world)
    with CaptureQueriesContext(connection) as one:
        assert "extend" in listed()[first.pk]
    standing, lost = _active(world), _active(world)
    AccessRequest.objects.filter(pk=lost.pk).update(decided_by=second)
    Membership.objects.filter(user=second, account=world.prod).update(can_approve=False)
    with CaptureQueriesContext(connection) as three:
        actions = listed()
    assert len(three) == len(one)
    assert ("extend" in actions[first.pk], "extend" in actions[standing.pk], "extend" in actions[lost.pk]) == (
        True,
        True,
        False,
    )
