"""Of a request that needs several approvals, an approval counts only while its approver may still
decide on the account (``approval_policies.approvals_standing``): one whose approving, membership,
site admin status or Passport account was taken away since no longer counts, the Logbook says so
(``request.approval_discounted``), and the request's page shows which approvals count."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from accounts.approval_policies import approvals_counted
from accounts.models import ApprovalPolicy, Membership, User
from audit.models import LogbookEntry
from devcloud.idp import Person
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.accounts.test_saml import INTERNAL, idp_entry, sign_in, signed_in_user
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


# A site admin approves on every account without a membership: taking site admin away (the User
# admin's "Superuser status" box, or a SAML sign-in without passport:site-admin) discounts that too.


def _site_admin_approved(world: World) -> tuple[AccessRequest, User]:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    sally = make_user("sally", is_superuser=True, is_staff=True)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="two approvals"
    )
    services.access_request_approve(access_request=access_request, approver=sally)  # 1 of 2
    return access_request, sally


def test_taking_site_admin_away_in_the_admin_records_the_approval_it_discounts(world: World) -> None:
    access_request, sally = _site_admin_approved(world)
    client, root = superuser_client()
    url = f"/admin/accounts/user/{sally.pk}/change/"
    post_ok(client, url, form_data(client, url, is_superuser=None))

    assert approvals_counted(request_id=access_request.pk, account=world.prod) == 0
    discounted = LogbookEntry.objects.get(action="request.approval_discounted", request_id=access_request.pk)
    assert discounted.actor == root
    assert discounted.detail == {
        "approver": "sally",
        "why": "sally no longer approves requests for Acme Production.",
        "via": "site_admin_removed",
        "approvals": 0,
        "required": 2,
    }


def test_a_site_admin_who_still_approves_as_a_member_loses_no_approval(world: World) -> None:
    access_request, sally = _site_admin_approved(world)
    make_membership(sally, world.prod, "observer", can_approve=True)
    sally.is_superuser = False
    sally.save()
    assert approvals_counted(request_id=access_request.pk, account=world.prod) == 1
    assert not LogbookEntry.objects.filter(action="request.approval_discounted").exists()


def test_a_saml_sign_in_without_site_admin_records_the_approval_it_discounts(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = [idp_entry("internal", INTERNAL, "internal")]
    boss = Person("boss@x.test", "boss@x.test", "B", "Oss", ["passport:site-admin"])
    web = Client()
    sign_in(web, "internal", INTERNAL, boss)
    site_admin = signed_in_user(web)
    assert site_admin is not None and site_admin.is_superuser
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="two approvals"
    )
    services.access_request_approve(access_request=access_request, approver=site_admin)

    web.logout()
    sign_in(web, "internal", INTERNAL, dataclasses.replace(boss, groups=[]))  # the IdP dropped the group

    discounted = LogbookEntry.objects.get(action="request.approval_discounted", request_id=access_request.pk)
    assert discounted.actor is None  # the identity provider's doing
    assert discounted.detail["approver"] == site_admin.username
    assert discounted.detail["via"] == "site_admin_removed" and discounted.detail["approvals"] == 0
