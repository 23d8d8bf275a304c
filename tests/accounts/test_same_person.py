"""One person, several users: a local break-glass account beside the SSO one is still the requester.

Whoever asked, under whichever of their users, neither approves nor rejects the request, is not
asked to, does not see it in their queue, and counts once among several approvals. Users are one
person by email (trimmed, any case); an empty email makes nobody the same person.
"""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from accounts import permissions
from accounts.approval_policies import approval_record
from accounts.models import Membership, SamlIdentity, User
from audit.models import LogbookEntry
from core.errors import NotAllowed
from requests_app import selectors, services
from requests_app.models import AccessRequest, RequestStatus
from tests.accounts.conftest import approved_once_by_one_person
from tests.conftest import World
from tests.factories import make_membership, make_user

pytestmark = pytest.mark.usefixtures("no_workers")


def carol_local(world: World, email: str = "carol@acme.example") -> User:
    """Carol's break-glass account: Admin on prod, so she may ask for access with it."""
    local = User.objects.create_user(username="carol-local", email=email, password="pw-carol-local")
    make_membership(local, world.prod, "admin")
    return local


def carol_saml(world: World, email: str = "carol@acme.example") -> User:
    """Carol as her identity provider signs her in: an approver of prod."""
    saml = User.objects.create(username="carol-saml", email=email, identity_store="customer")
    SamlIdentity.objects.create(user=saml, identity_store="customer", name_id=email, idp_slug="customer")
    Membership.objects.create(user=saml, account=world.prod, role="admin", can_approve=True, source="saml")
    return saml


def create(world: World, requester: User) -> AccessRequest:
    return services.access_request_create(
        requester=requester, account=world.prod, instances=[world.web], reason="rotate the logs"
    )


def test_the_requester_under_another_user_neither_approves_nor_rejects(world: World) -> None:
    local, saml = carol_local(world), carol_saml(world)
    access_request = create(world, local)

    with pytest.raises(NotAllowed) as approving:
        services.access_request_approve(access_request=access_request, approver=saml)
    with pytest.raises(NotAllowed) as rejecting:
        services.access_request_reject(access_request=access_request, approver=saml, note="no")

    assert str(approving.value) == (
        "You cannot approve your own request: carol-local asked for it, and that user has your email "
        "(carol@acme.example). Another approver must decide it."
    )
    assert str(rejecting.value).startswith("You cannot decide your own request: carol-local asked for it")
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    denied = LogbookEntry.objects.filter(request_id=access_request.pk, action="request.approve_denied").get()
    assert denied.actor_label == "carol-saml"
    actions = selectors.access_request_actions(access_request=access_request, user=saml)
    assert not actions.approve and not actions.reject
    # Someone else still decides it.
    services.access_request_approve(access_request=access_request, approver=world.approver)
    assert access_request.status == RequestStatus.APPROVED


def test_the_queue_leaves_out_what_the_person_asked_under_another_user(world: World) -> None:
    local, saml = carol_local(world), carol_saml(world)
    own = create(world, local)
    others = create(world, world.requester)

    assert list(selectors.approval_queue(user=saml)) == [others]
    assert selectors.approval_queue_count(user=saml) == 1
    assert own in selectors.approval_queue(user=world.approver)


@pytest.mark.parametrize(
    ("local_email", "saml_email", "same"),
    [
        ("carol@acme.example", "carol@acme.example", True),
        ("Carol@ACME.example", " carol@acme.example ", True),
        ("carol@acme.example", "carol@other.example", False),
        ("", "", False),  # no email: nobody is known to be the same person
    ],
)
def test_one_person_is_the_same_email_without_regard_to_case(
    world: World, local_email: str, saml_email: str, same: bool
) -> None:
    local, saml = carol_local(world, local_email), carol_saml(world, saml_email)
    access_request = create(world, local)

    assert permissions.same_person(saml, local) is same
    assert set(User.objects.filter(pk__in=permissions.same_person_users(saml))) == ({saml, local} if same else {saml})
    assert permissions.can_decide(saml, access_request) is not same
    # Using the access stays with the user who asked.
    assert permissions.use_access_refusal(local, access_request) is None
    assert (
        permissions.use_access_refusal(saml, access_request) == "Only the person who asked for this access can use it."
    )


def test_one_person_counts_once_among_several_approvals(world: World) -> None:
    saml = carol_saml(world)
    local = User.objects.create_user(username="carol-local", email="CAROL@acme.example", password="pw")
    make_membership(local, world.prod, "admin", can_approve=True)
    access_request = approved_once_by_one_person(world, saml, local)

    services.access_request_approve(access_request=access_request, approver=world.approver)
    assert access_request.status == RequestStatus.APPROVED


def test_approval_record_counts_a_person_once_even_past_the_service(world: World) -> None:
    """The count itself, which the locked request row orders, not only the service's early refusal."""
    saml = carol_saml(world)
    local = make_user("carol-local")
    local.email = "carol@acme.example"
    local.save(update_fields=["email"])

    assert approval_record(request_id=1, account=world.prod, approver=saml) == (1, True)
    assert approval_record(request_id=1, account=world.prod, approver=local) == (1, False)
    assert approval_record(request_id=1, account=world.prod, approver=world.approver) == (2, True)


def test_nobody_changes_their_own_email_to_stop_being_the_same_person(world: World) -> None:
    # Carol asks as her local user, then would move its email away and approve as her SAML user.
    local, saml = carol_local(world), carol_saml(world)
    access_request = create(world, local)
    client = Client()
    client.force_login(local)

    page = client.get("/accounts/email/")
    added = client.post("/accounts/email/", {"action_add": "", "email": "someone-else@acme.example"})

    assert page.status_code == added.status_code == 302 and added["Location"] == "/requests/"
    local.refresh_from_db()
    assert local.email == "carol@acme.example"
    assert not EmailAddress.objects.filter(email="someone-else@acme.example").exists()
    assert not permissions.can_decide(saml, access_request)
