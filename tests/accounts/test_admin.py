"""A site admin configures an account in the admin (its approval policy, which requests obey; its
regions), and the admin refuses what the account cannot hold."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApprovalPolicy, AwsAccount, Membership
from requests_app import services
from requests_app.models import RequestStatus
from tests.audit.admin_forms import form_data, superuser_client
from tests.audit.test_admin_trail_accounts import ACCOUNTS, _row
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _change_form(world: World, **policy: str) -> dict[str, Any]:
    account = world.prod
    data: dict[str, Any] = {
        "account_id": account.account_id,
        "name": account.name,
        "regions": '["us-east-1"]',
        "role_arn": account.role_arn,
        "cli_sessions": account.cli_sessions,
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "approval_policy-TOTAL_FORMS": "1",
        "approval_policy-INITIAL_FORMS": "0",
        "approval_policy-0-account": str(account.pk),
        "approval_policy-0-auto_approve_identity_store": "internal",
        "approval_policy-0-auto_approve_max_duration": "02:00:00",
    }
    data.update({f"approval_policy-0-{name}": value for name, value in policy.items()})
    return data


def test_the_admin_sets_how_many_approvals_a_request_needs(world: World) -> None:
    admin = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(admin)
    url = f"/admin/accounts/awsaccount/{world.prod.pk}/change/"
    assert b"approval_policy-TOTAL_FORMS" in client.get(url).content

    response = client.post(url, _change_form(world, approvals_required="2", deny_admin_rights="on"))

    assert response.status_code == 302, response.content.decode()[:2000]
    policy = ApprovalPolicy.objects.get(account=world.prod)
    assert policy.approvals_required == 2 and policy.deny_admin_rights
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Two approvals now"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING  # one of two approvals


def test_a_policy_needs_at_least_one_approval(world: World) -> None:
    admin = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(admin)
    response = client.post(
        f"/admin/accounts/awsaccount/{world.prod.pk}/change/", _change_form(world, approvals_required="0")
    )
    assert response.status_code == 200  # the form again, with its error
    assert not ApprovalPolicy.objects.filter(account=world.prod).exists()


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::111111111111:role/PassportPortal",
        "arn:aws:iam::111111111111:role/ops/passportportal",  # one role to IAM, whatever path or case
        "arn:aws:sts::111111111111:assumed-role/PassportPortal/passport-portal",  # a session of it
    ],
)
def test_the_admin_cannot_make_the_portals_own_role_a_persons_principal(world: World, arn: str) -> None:
    """IAM is asked about a person's principal: the role the portal assumes may do everything Passport does."""
    client, _root = superuser_client()
    url = f"{ACCOUNTS}{world.prod.pk}/change/"
    membership = Membership.objects.get(user=world.requester, account=world.prod)
    data = form_data(client, url)
    data[f"{_row(data, 'memberships', membership.pk)}-principal_arn"] = [arn]

    response = client.post(url, data)

    assert response.status_code == 200
    assert "This is the role Passport itself assumes" in response.content.decode()
    membership.refresh_from_db()
    assert membership.principal_arn == "arn:aws:iam::111111111111:user/alice"


REGIONS_REFUSED = 'Enter a JSON list of AWS region names, e.g. ["eu-west-1", "us-east-1"].'


@pytest.mark.parametrize(
    "regions",
    [
        # What PostgreSQL cannot store in jsonb (a DataError, a 500): NUL, a lone surrogate, Infinity, NaN.
        pytest.param('["eu-west-1\\u0000"]', id="nul-in-a-name"),
        pytest.param('["\\ud800"]', id="lone-surrogate"),
        pytest.param('{"\\u0000": 1}', id="nul-key"),
        pytest.param("1e999", id="infinity"),
        pytest.param("[NaN]", id="nan"),
        # What no code reading the regions expects.
        pytest.param('"eu-west-1"', id="not-a-list"),
        pytest.param('["eu-west-1", 1]', id="not-a-name"),
        pytest.param('["eu-west-1", "Frankfurt"]', id="not-a-region"),
        pytest.param('["eu-west-1\\n"]', id="newline"),
    ],
)
def test_the_admin_refuses_regions_that_are_not_region_names(world: World, regions: str) -> None:
    client, _root = superuser_client()
    before = list(AwsAccount.objects.filter(pk=world.prod.pk).values_list("regions", flat=True))

    response = client.post(
        f"{ACCOUNTS}{world.prod.pk}/change/", {**_change_form(world, approvals_required="1"), "regions": regions}
    )

    assert response.status_code == 200  # the form again, with its error
    assert REGIONS_REFUSED in html.unescape(response.content.decode())
    assert list(AwsAccount.objects.filter(pk=world.prod.pk).values_list("regions", flat=True)) == before


def test_the_admin_takes_a_list_of_region_names(world: World) -> None:
    client, _root = superuser_client()
    regions = '["eu-west-1", "us-gov-west-1", "ap-southeast-2"]'

    response = client.post(
        f"{ACCOUNTS}{world.prod.pk}/change/", {**_change_form(world, approvals_required="1"), "regions": regions}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    world.prod.refresh_from_db()
    assert world.prod.regions == ["eu-west-1", "us-gov-west-1", "ap-southeast-2"]
