"""Of a request that needs several approvals, an approval counts only while its approver may still
decide on the account (``approval_policies.approvals_standing``): one whose approving, membership or
Passport account was taken away since no longer counts, the Logbook says so
(``request.approval_discounted``), and the request's page shows which approvals count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from accounts.models import ApprovalPolicy, Membership, User
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.audit.test_admin_trail_accounts import ACCOUNTS, _row
from tests.conftest import World
from tests.factories import make_membership, make_user
from workers import tasks

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_workers(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.PASSPORT_IAM_CHECK = False
    monkeypatch.setattr(tasks.begin_provisioning, "delay", lambda request_id: None)
    monkeypatch.setattr(tasks.send_notification, "delay", lambda kind, request_id: None)


def _approving_removed(world: World, client: Client) -> None:
    url = f"{ACCOUNTS}{world.prod.pk}/change/"
    data = form_data(client, url)
    data.pop(
        f"{_row(data, 'memberships', Membership.objects.get(user=world.approver, account=world.prod).pk)}-can_approve"
    )
    post_ok(client, url, data)


def _membership_removed(world: World, client: Client) -> None:
    url = f"{ACCOUNTS}{world.prod.pk}/change/"
    data = form_data(client, url)
    row = _row(data, "memberships", Membership.objects.get(user=world.approver, account=world.prod).pk)
    data[f"{row}-DELETE"] = ["on"]
    post_ok(client, url, data)


def _deactivated(world: World, client: Client) -> None:
    url = f"/admin/accounts/user/{world.approver.pk}/change/"
    post_ok(client, url, form_data(client, url, is_active=None))


REMOVALS: list[Any] = [
    pytest.param(_approving_removed, "carol no longer approves requests for Acme Production.", id="can-approve"),
    pytest.param(_membership_removed, "carol no longer approves requests for Acme Production.", id="membership"),
    pytest.param(_deactivated, "carol has been deactivated since.", id="deactivated"),
]


@pytest.fixture
def second(world: World) -> User:
    grace = make_user("grace")
    make_membership(grace, world.prod, "admin", can_approve=True)
    return grace


def _one_of_two(world: World) -> AccessRequest:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="two approvals"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)  # 1 of 2
    return access_request


@pytest.mark.parametrize(("remove", "why"), REMOVALS)
def test_an_approval_given_by_someone_no_longer_an_approver_does_not_count(
    world: World, second: User, remove: Callable[[World, Client], None], why: str
) -> None:
    access_request = _one_of_two(world)
    client, root = superuser_client()
    remove(world, client)

    discounted = LogbookEntry.objects.get(action="request.approval_discounted", request_id=access_request.pk)
    assert discounted.actor == root
    assert discounted.detail == {
        "approver": world.approver.username,
        "why": why,
        "via": "deactivated" if "deactivated" in why else "admin",
        "approvals": 0,
        "required": 2,
    }

    services.access_request_approve(access_request=access_request, approver=second)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    recorded = LogbookEntry.objects.filter(action="request.approval_recorded", request_id=access_request.pk)
    assert recorded.latest("id").detail["approvals"] == 1

    # The page says which approvals count, and why carol's does not.
    grace = Client()
    grace.force_login(second)
    page = grace.get(f"/requests/{access_request.pk}/").content.decode()
    assert 'data-testid="approvals-counted">1 of 2</span>' in page
    assert escape(why) in page

    # A third approver makes two that count.
    third = make_user("heidi")
    make_membership(third, world.prod, "observer", can_approve=True)
    services.access_request_approve(access_request=access_request, approver=third)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED


def test_an_approval_counts_again_once_approving_is_given_back(world: World, second: User) -> None:
    access_request = _one_of_two(world)
    Membership.objects.filter(user=world.approver, account=world.prod).update(can_approve=False)
    Membership.objects.filter(user=world.approver, account=world.prod).update(can_approve=True)
    services.access_request_approve(access_request=access_request, approver=second)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED


def test_an_admin_edit_that_leaves_approving_records_no_discount(world: World) -> None:
    access_request = _one_of_two(world)
    client, _ = superuser_client()
    url = f"{ACCOUNTS}{world.prod.pk}/change/"
    data = form_data(client, url)
    row = _row(data, "memberships", Membership.objects.get(user=world.approver, account=world.prod).pk)
    data[f"{row}-role"] = ["observer"]  # carol still approves here
    post_ok(client, url, data)
    assert not LogbookEntry.objects.filter(action="request.approval_discounted").exists()
    page_client = Client()
    page_client.force_login(world.approver)
    page = page_client.get(f"/requests/{access_request.pk}/").content.decode()
    assert 'data-testid="approvals-counted">1 of 2</span>' in page and "does not count" not in page
