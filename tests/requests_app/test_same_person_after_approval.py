"""Approvals are weighed by who the approvers are now, not only as each was given: one whose user
has since become the requester's own person (the same email key: a SAML sign-in saves the identity
provider's address, a site admin gives two users one email) stops counting, and of several approvals
one person's users count once (``accounts.approval_policies.approvals_standing``). The email change
records at once the approvals it discounts (``request.approval_discounted``, ``via`` ``email_changed``),
as a loss of approving does; an approved request goes back to pending when provisioning starts.
README: "what carol asked for from her local account her SAML one cannot approve ... and of several
approvals the account asks for, one person's users count once"."""

from __future__ import annotations

import dataclasses

import pytest
from django.test import Client

from accounts.approval_policies import approvals_counted, approvals_standing
from accounts.models import ApprovalPolicy
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.accounts.test_saml import CAROL, CUSTOMER, idps, sign_in, signed_in_user  # noqa: F401  (idps: the autouse fixture)
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.conftest import World
from tests.factories import make_membership, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]


def test_an_approval_by_the_requesters_own_other_user_stops_counting(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    second = make_user("bert")
    make_membership(second, world.prod, "admin", can_approve=True)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy logs"
    )
    # carol approves: one of two.
    services.access_request_approve(access_request=access_request, approver=world.approver)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING

    # carol's user now has the requester's email (as a SAML sign-in saves the IdP's address,
    # accounts/saml/services.py: user.email = address; user.save(update_fields=["email", ...])):
    # by the portal's rule she and alice are now one person, who may not approve alice's request.
    world.approver.email = world.requester.email
    world.approver.save(update_fields=["email"])
    with pytest.raises(RequestRuleError):
        services.access_request_approve(access_request=access_request, approver=world.approver)

    # Nor does her approval given before count: one more approver leaves it one of two, not
    # alice's request approved with her own (other user's) approval as one of the two.
    services.access_request_approve(access_request=access_request, approver=second)
    access_request.refresh_from_db()
    assert approvals_counted(request_id=access_request.pk, account=world.prod) < 2
    assert access_request.status == RequestStatus.PENDING, (
        "approved with the requester's own approval (under another user of hers) counted as one of two"
    )


def test_a_lone_approval_by_the_requesters_own_user_is_not_weighed_again_at_provisioning(world: World) -> None:
    """One approval asked for: when provisioning starts the decider's approval is weighed again
    (``access_request_reopen_if_approvals_short``): lost approving, membership, deactivated, and
    whether the decider has since become the requester's own person."""
    from requests_app.services.lifecycle.policy import access_request_reopen_if_approvals_short

    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy logs"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    world.approver.email = world.requester.email
    world.approver.save(update_fields=["email"])
    reopened = access_request_reopen_if_approvals_short(access_request=access_request, via="provisioning")
    access_request.refresh_from_db()
    assert reopened and access_request.status == RequestStatus.PENDING, (
        "provisioning goes ahead on the requester's own approval"
    )


def test_two_approvals_that_become_one_persons_count_once(world: World) -> None:
    """Of several approvals the account asks for, one person's users count once: as each is given
    (``approval_of_person``), and again once two approvers' users become one person (one counts)."""
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=3)
    bert, dan = make_user("bert"), make_user("dan")
    make_membership(bert, world.prod, "admin", can_approve=True)
    make_membership(dan, world.prod, "admin", can_approve=True)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy logs"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    services.access_request_approve(access_request=access_request, approver=bert)
    bert.email = world.approver.email  # bert's user is carol's other one (linked later: SAML email, or an admin)
    bert.save(update_fields=["email"])
    services.access_request_approve(access_request=access_request, approver=dan)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING, "three approvals asked for, two people gave them"


# --- on record when it happens: the email change re-weighs the approvals it touches ------------------


def _discounted(access_request: AccessRequest) -> list[LogbookEntry]:
    return list(
        LogbookEntry.objects.filter(action="request.approval_discounted", request_id=access_request.pk).order_by("pk")
    )


def _one_of_two(world: World) -> AccessRequest:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="two approvals"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)  # 1 of 2
    return access_request


def test_an_admin_giving_the_approver_the_requesters_email_discounts_her_approval_on_record(world: World) -> None:
    access_request = _one_of_two(world)
    client, root = superuser_client()
    url = f"/admin/accounts/user/{world.approver.pk}/change/"
    post_ok(client, url, form_data(client, url, email=world.requester.email.upper()))

    [entry] = _discounted(access_request)
    assert entry.actor == root
    assert entry.detail["approver"] == "carol"
    assert entry.detail["via"] == "email_changed"
    assert "same person as the requester" in entry.detail["why"]
    assert (entry.detail["approvals"], entry.detail["required"]) == (0, 2)


def test_the_requesters_new_email_discounts_the_approval_of_her_other_user(world: World) -> None:
    """As a SAML sign-in saves the identity provider's address on the requester's user."""
    access_request = _one_of_two(world)
    world.requester.email = world.approver.email
    world.requester.save(update_fields=["email"])

    [entry] = _discounted(access_request)
    assert (entry.detail["approver"], entry.detail["via"], entry.detail["approvals"]) == ("carol", "email_changed", 0)
    assert entry.actor is None


def test_a_lone_decision_by_the_requesters_new_person_is_discounted_and_goes_back_to_pending(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="one approval"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED
    world.approver.email = world.requester.email
    world.approver.save(update_fields=["email"])

    [entry] = _discounted(access_request)
    assert (entry.detail["approver"], entry.detail["approvals"], entry.detail["required"]) == ("carol", 0, 1)
    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING


def test_an_earlier_approver_joining_a_later_ones_person_discounts_the_later_approval(world: World) -> None:
    """carol approved first, bert second; carol's user then gets bert's email: one person, whose
    oldest approval (carol's) counts, and bert's is the one discounted."""
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=3)
    bert = make_user("bert")
    make_membership(bert, world.prod, "admin", can_approve=True)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="three approvals"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    services.access_request_approve(access_request=access_request, approver=bert)
    world.approver.email = bert.email
    world.approver.save(update_fields=["email"])

    [entry] = _discounted(access_request)
    assert entry.detail["approver"] == "bert"
    assert "same person as carol" in entry.detail["why"]
    assert entry.detail["approvals"] == 1
    standing = approvals_standing(request_id=access_request.pk, account=world.prod)
    assert [(one.approval.approver.username, one.counts) for one in standing] == [("carol", True), ("bert", False)]


def test_an_email_change_that_joins_nobody_records_nothing(world: World) -> None:
    access_request = _one_of_two(world)
    world.approver.email = "carol.new@example.test"
    world.approver.save()
    world.approver.first_name = "Carol"
    world.approver.save(update_fields=["first_name"])
    assert _discounted(access_request) == []
    assert approvals_counted(request_id=access_request.pk, account=world.prod) == 1


def test_a_saml_sign_in_that_brings_the_requesters_email_discounts_the_approval(world: World) -> None:
    """The identity provider now says its user carol is alice (her address): at that sign-in the
    approval carol's SAML user gave alice's local request stops counting, on record."""
    client = Client()
    sign_in(client, "customer", CUSTOMER, CAROL)
    saml_carol = signed_in_user(client)
    assert saml_carol is not None
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="two approvals"
    )
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    services.access_request_approve(access_request=access_request, approver=saml_carol)
    assert approvals_counted(request_id=access_request.pk, account=world.prod) == 1

    sign_in(Client(), "customer", CUSTOMER, dataclasses.replace(CAROL, email=world.requester.email))

    assert approvals_counted(request_id=access_request.pk, account=world.prod) == 0
    [entry] = _discounted(access_request)
    assert (entry.detail["approver"], entry.detail["via"], entry.actor) == (saml_carol.username, "email_changed", None)
