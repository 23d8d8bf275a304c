"""What a SAML sign-in changed is on record with its before and after (``auth.saml_synced``): each
membership added, changed or removed with its role, approver flag and source on both sides, and the
person's auditor and site-admin flags before and after. The entry stays bounded: the memberships
past ``MEMBERSHIPS_NAMED`` in a list are counted, not named."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import Membership, User
from accounts.saml.memberships import MEMBERSHIPS_NAMED
from audit.models import LogbookEntry
from devcloud.idp import Person
from tests.accounts.test_saml import CUSTOMER, INTERNAL, idps, sign_in, signed_in_user  # noqa: F401
from tests.conftest import World
from tests.factories import make_account, make_membership

pytestmark = pytest.mark.django_db

PROD = "111111111111"


@pytest.fixture(autouse=True)
def no_iam(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = False


def _zed(groups: list[str]) -> Person:
    return Person("zed@customer.test", "zed@customer.test", "Zed", "Zulu", groups)


def _synced(user: User) -> dict[str, Any]:
    entry = LogbookEntry.objects.filter(action="auth.saml_synced", actor=user).latest("id")
    return entry.detail


def _sign_in(client: Client, person: Person, *, slug: str = "customer") -> User:
    client.logout()
    sign_in(client, slug, CUSTOMER if slug == "customer" else INTERNAL, person)
    user = signed_in_user(client)
    assert user is not None
    return user


def _membership(role: str, can_approve: bool, source: str = "saml") -> dict[str, Any]:
    return {"role": role, "can_approve": can_approve, "source": source}


def test_a_role_raised_then_dropped_is_recorded_with_before_and_after(world: World) -> None:
    client = Client()
    zed = _sign_in(client, _zed([f"passport:{PROD}:observer"]))
    detail = _synced(zed)
    assert detail["memberships_added"] == [{"account": PROD, "before": None, "after": _membership("observer", False)}]
    assert (detail["memberships_changed"], detail["memberships_removed"]) == ([], [])
    assert (detail["auditor_before"], detail["auditor"], detail["site_admin_before"], detail["site_admin"]) == (
        False,
        False,
        False,
        False,
    )

    # Observer -> Admin and approver, and the Logbook's reader too.
    _sign_in(client, _zed([f"passport:{PROD}:admin", f"passport:{PROD}:approver", "passport:auditor"]))
    detail = _synced(zed)
    assert detail["memberships_changed"] == [
        {"account": PROD, "before": _membership("observer", False), "after": _membership("admin", True)}
    ]
    assert (detail["memberships_added"], detail["memberships_removed"]) == ([], [])
    assert (detail["auditor_before"], detail["auditor"]) == (False, True)

    # The groups gone: the membership and the auditor flag with them.
    _sign_in(client, _zed([]))
    assert not Membership.objects.filter(user=zed).exists()
    detail = _synced(zed)
    assert detail["memberships_removed"] == [{"account": PROD, "before": _membership("admin", True), "after": None}]
    assert (detail["memberships_added"], detail["memberships_changed"]) == ([], [])
    assert (detail["auditor_before"], detail["auditor"]) == (True, False)
    assert not any(key.endswith("_not_named") for key in detail)


def test_an_admins_membership_taken_over_by_the_groups_says_it_was_local(world: World) -> None:
    client = Client()
    zed = _sign_in(client, _zed([]))
    make_membership(zed, world.staging, "admin", can_approve=True)  # a site admin's, source local
    _sign_in(client, _zed(["passport:222222222222:observer"]))
    assert _synced(zed)["memberships_changed"] == [
        {
            "account": "222222222222",
            "before": _membership("admin", True, "local"),
            "after": _membership("observer", False),
        }
    ]


def test_site_admin_granted_then_taken_is_recorded_with_before_and_after(world: World) -> None:
    client = Client()
    boss = Person("boss@x.test", "boss@x.test", "B", "Oss", ["passport:site-admin"])
    user = _sign_in(client, boss, slug="internal")
    assert user.is_superuser
    detail = _synced(user)
    assert (detail["site_admin_before"], detail["site_admin"], detail["staff_before"]) == (False, True, False)
    _sign_in(client, Person("boss@x.test", "boss@x.test", "B", "Oss", []), slug="internal")
    detail = _synced(user)
    assert (detail["site_admin_before"], detail["site_admin"], detail["staff_before"]) == (True, False, True)


def test_memberships_past_the_named_many_are_counted(world: World) -> None:
    extra = MEMBERSHIPS_NAMED + 3
    ids = [f"{900000000000 + number}" for number in range(extra)]
    for number, account_id in enumerate(ids):
        make_account(account_id, f"Account {number}")
    client = Client()
    zed = _sign_in(client, _zed([f"passport:{account_id}:observer" for account_id in ids]))
    assert Membership.objects.filter(user=zed).count() == extra
    detail = _synced(zed)
    assert [item["account"] for item in detail["memberships_added"]] == sorted(ids)[:MEMBERSHIPS_NAMED]
    assert detail["memberships_added_not_named"] == 3
    _sign_in(client, _zed([]))
    detail = _synced(zed)
    assert len(detail["memberships_removed"]) == MEMBERSHIPS_NAMED
    assert detail["memberships_removed"][0] == {
        "account": ids[0],
        "before": _membership("observer", False),
        "after": None,
    }
    assert detail["memberships_removed_not_named"] == 3
