"""A membership lowered from Admin or removed ends that person's live access on the account, whichever
way it changed: a site admin's inline row in the admin, or the groups of a SAML sign-in. The request
is revoked (``end_reason`` ``revoked``, a ``request.revoked`` Logbook entry saying why and who)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import Membership
from audit.models import LogbookEntry
from devcloud.idp import Person
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from tests.accounts.test_saml import CAROL, CUSTOMER, idps, sign_in, signed_in_user  # noqa: F401
from tests.audit.admin_forms import add_inline_row, form_data, post_ok, superuser_client
from tests.audit.test_admin_trail_accounts import ACCOUNTS, _row
from tests.conftest import World
from tests.factories import make_active_request

pytestmark = pytest.mark.django_db

WHERE = "on Acme Production (111111111111) now; only an Admin of the account may have access to its instances."


@pytest.fixture(autouse=True)
def no_iam(settings: Any) -> None:
    # Asking AWS IAM is requests_app.iam's rule, tested with it.
    settings.PASSPORT_IAM_CHECK = False


def _revoked(access_request: AccessRequest) -> LogbookEntry:
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.COMPLETING and access_request.end_reason == "revoked"
    assert Grant.objects.get(request=access_request).status == GrantStatus.REMOVING
    return LogbookEntry.objects.get(action="request.revoked", request_id=access_request.pk)


# --- the admin --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "held"),
    [("observer", "the Observer role"), ("none", "no role"), ("delete", "no role")],
)
def test_lowering_or_removing_a_membership_in_the_admin_revokes_live_access(
    world: World, change: str, held: str
) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    erin = make_active_request(world.member, world.prod, world.web)
    client, root = superuser_client()
    url = f"{ACCOUNTS}{world.prod.pk}/change/"
    data = form_data(client, url)
    row = _row(data, "memberships", Membership.objects.get(user=world.requester, account=world.prod).pk)
    data.update({f"{row}-DELETE": ["on"]} if change == "delete" else {f"{row}-role": [change]})
    post_ok(client, url, data)

    revoked = _revoked(alice)
    assert revoked.actor == root and alice.ended_by == root
    assert revoked.detail == {
        "end_reason": "revoked",
        "why": f"Alice Admin has {held} {WHERE}",
        "role": "observer" if change == "observer" else "none",
        "via": "admin",
    }
    # Another Admin of the account keeps their access.
    assert AccessRequest.objects.get(pk=erin.pk).status == RequestStatus.ACTIVE


def test_an_admin_edit_that_leaves_the_admin_role_revokes_nothing(world: World) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    client, _ = superuser_client()
    url = f"{ACCOUNTS}{world.prod.pk}/change/"
    data = form_data(client, url, name="Acme Prod")
    row = _row(data, "memberships", Membership.objects.get(user=world.requester, account=world.prod).pk)
    oscar = _row(data, "memberships", Membership.objects.get(user=world.observer, account=world.prod).pk)
    data.update({f"{row}-can_approve": ["on"], f"{oscar}-DELETE": ["on"]})
    add_inline_row(data, "memberships", user=str(world.outsider.pk), role="observer")
    post_ok(client, url, data)

    assert AccessRequest.objects.get(pk=alice.pk).status == RequestStatus.ACTIVE
    assert not LogbookEntry.objects.filter(action="request.revoked").exists()


# --- a SAML sign-in -----------------------------------------------------------------------


def _carol(groups: list[str]) -> Person:
    return Person(CAROL.name_id, CAROL.email, "Carol", "Customer", groups)


@pytest.mark.parametrize(
    ("groups", "held", "role"),
    [
        (["passport:111111111111:observer"], "the Observer role", "observer"),
        (["passport:acme staging:admin"], "no role", "none"),
    ],
    ids=["lowered-to-observer", "group-dropped"],
)
def test_a_sign_in_whose_groups_lower_or_drop_the_admin_role_revokes_live_access(
    world: World, groups: list[str], held: str, role: str
) -> None:
    client = Client()
    sign_in(client, "customer", CUSTOMER, _carol(["passport:111111111111:admin"]))
    carol = signed_in_user(client)
    assert carol is not None
    access_request = make_active_request(carol, world.prod, world.web)
    client.logout()

    sign_in(client, "customer", CUSTOMER, _carol(groups))

    revoked = _revoked(access_request)
    assert revoked.actor is None and access_request.ended_by is None  # the identity provider's word
    assert revoked.detail == {
        "end_reason": "revoked",
        "why": f"Carol Customer has {held} {WHERE}",
        "role": role,
        "via": "saml",
    }
    synced = LogbookEntry.objects.filter(action="auth.saml_synced", actor=carol).latest("id")
    assert synced.id < revoked.id  # the sync first, then what it ended


def test_a_sign_in_that_keeps_the_admin_role_revokes_nothing(world: World) -> None:
    client = Client()
    sign_in(client, "customer", CUSTOMER, _carol(["passport:111111111111:admin"]))
    carol = signed_in_user(client)
    assert carol is not None
    access_request = make_active_request(carol, world.prod, world.web)
    client.logout()
    # Approver too now: the membership changed, the role did not.
    sign_in(client, "customer", CUSTOMER, _carol(["passport:111111111111:admin", "passport:111111111111:approver"]))
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE
    assert not LogbookEntry.objects.filter(action="request.revoked").exists()
