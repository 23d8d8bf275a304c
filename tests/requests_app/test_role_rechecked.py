"""Only an Admin of the account may have access to its instances: the role is asked again at the
approval and at every use of the access, not only when the request was made.

A requester demoted to Observer, given no role, or removed from the account (by an admin, or by
the identity provider dropping a group at a sign-in) after asking keeps nothing: the approval is
refused with why (the request stays pending for the approver to reject), and certificates,
passwords, sessions and AWS credentials are refused naming the role they now hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApprovalPolicy, Membership
from audit.models import LogbookEntry
from core.errors import NotAllowed, RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.passwords import seal_password
from tests.conftest import World
from tests.factories import make_membership, make_user
from tests.requests_app.test_services import actions, activate, create

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb0Ik1Q5lmqk7cCc8DSK7zS4Tb5lYq4TIpQKQd2SKlR me"
WHERE = "on Acme Production (111111111111) now; only an Admin of the account may have access to its instances."

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


def _demote(world: World) -> None:
    Membership.objects.filter(user=world.requester, account=world.prod).update(role=Membership.Role.OBSERVER)


def _no_role(world: World) -> None:
    Membership.objects.filter(user=world.requester, account=world.prod).update(role=Membership.Role.NONE)


def _remove(world: World) -> None:
    Membership.objects.filter(user=world.requester, account=world.prod).delete()


# How the role went, and the words the refusal names it with.
LOSSES: list[Any] = [
    pytest.param(_demote, "the Observer role", id="demoted-to-observer"),
    pytest.param(_no_role, "no role", id="role-none"),
    pytest.param(_remove, "no role", id="membership-removed"),
]


def _active(world: World, instance: Instance) -> Grant:
    """An active request of the requester's with one ready grant (a sealed password on Windows)."""
    access_request = create(world, instances=[instance])
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    grant = Grant.objects.select_related("request__account", "instance").get(request=access_request)
    Grant.objects.filter(pk=grant.pk).update(
        status=GrantStatus.READY, ready_at=now, password_sealed=seal_password(grant, "Sealed-Pass-0001")
    )
    return Grant.objects.select_related("request__account", "instance").get(pk=grant.pk)


# --- approval -------------------------------------------------------------------------


@pytest.mark.parametrize(("lose", "held"), LOSSES)
def test_approving_for_a_requester_who_is_no_longer_admin_is_refused_and_says_why(
    world: World,
    queued: list[tuple[str, int]],
    lose: Callable[[World], None],
    held: str,
) -> None:
    access_request = create(world)
    lose(world)

    with pytest.raises(RequestRuleError) as caught:
        services.access_request_approve(access_request=access_request, approver=world.approver)

    assert caught.value.code == "conflict"
    refusal = f"Alice Admin has {held} {WHERE} It cannot be approved; reject it instead."
    assert caught.value.errors["__all__"] == [refusal]
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING and access_request.decided_by is None
    assert queued == []  # nothing is provisioned
    denied = LogbookEntry.objects.get(action="request.approve_denied", request_id=access_request.pk)
    assert denied.actor == world.approver and denied.detail["denied"] == caught.value.errors
    # The approver can then reject it.
    services.access_request_reject(access_request=access_request, approver=world.approver, note="Not an Admin now.")
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.REJECTED


def test_a_refused_approval_never_becomes_active_access(world: World) -> None:
    """The reviewer's path: demoted while pending, approved anyway, the workers run."""
    access_request = create(world)
    _demote(world)
    with pytest.raises(RequestRuleError):
        services.access_request_approve(access_request=access_request, approver=world.approver)
    assert activate(access_request).status == RequestStatus.PENDING
    assert "request.approved" not in actions(access_request)


def test_an_approval_that_needs_several_approvers_is_refused_at_each_one(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    second = make_user("grace")
    make_membership(second, world.prod, "observer", can_approve=True)
    access_request = create(world)
    services.access_request_approve(access_request=access_request, approver=world.approver)  # one of two
    _demote(world)
    with pytest.raises(RequestRuleError, match="the Observer role"):
        services.access_request_approve(access_request=access_request, approver=second)
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.PENDING


def test_the_approval_goes_through_again_once_the_role_is_back(world: World) -> None:
    access_request = create(world)
    _demote(world)
    with pytest.raises(RequestRuleError):
        services.access_request_approve(access_request=access_request, approver=world.approver)
    Membership.objects.filter(user=world.requester, account=world.prod).update(role=Membership.Role.ADMIN)
    approved = services.access_request_approve(access_request=access_request, approver=world.approver)
    assert approved.status == RequestStatus.APPROVED


# --- the pages and the API offer no approval they would refuse ---------------------------


def _approve_url(access_request: AccessRequest) -> str:
    return f'action="{reverse("requests:action", args=[access_request.pk, "approve"])}"'


def _reject_url(access_request: AccessRequest) -> str:
    return f'href="{reverse("requests:action", args=[access_request.pk, "reject"])}"'


@pytest.mark.parametrize(("lose", "held"), LOSSES)
def test_the_approvals_page_says_why_in_place_of_approve_and_keeps_reject(
    world: World, client: Client, lose: Callable[[World], None], held: str
) -> None:
    lowered = create(world)
    other = make_user("erin-2")
    make_membership(other, world.prod, "admin")
    fine = create(world, requester=other)
    lose(world)
    client.force_login(world.approver)

    body = client.get(reverse("requests:approvals")).content.decode()

    refusal = f"Alice Admin has {held} {WHERE} It cannot be approved; reject it instead."
    row = body.split(f'data-request="{lowered.pk}"')[1].split("</tr>")[0]
    assert _approve_url(lowered) not in row
    assert _reject_url(lowered) in row
    assert 'data-testid="approve-refusal"' in row and refusal in row
    # The other requester is still an Admin: their request keeps its Approve button.
    assert _approve_url(fine) in body

    # The endpoint still refuses, as the page said.
    response = client.post(reverse("requests:action", args=[lowered.pk, "approve"]))
    assert response.status_code == 302
    assert AccessRequest.objects.get(pk=lowered.pk).status == RequestStatus.PENDING
    assert refusal in client.get(response["Location"]).content.decode()


def test_the_approvals_page_poll_hears_of_a_lowered_role(world: World, client: Client) -> None:
    """The queue's poll answers 204 while nothing changed; a role lowered meanwhile is a change."""
    access_request = create(world)
    client.force_login(world.approver)
    url = reverse("requests:approvals")
    body = client.get(url).content.decode()
    seen = re.search(r"seen=([0-9a-f]+)", body)
    assert seen is not None
    poll = {"fragment": "queue", "seen": seen.group(1)}
    assert client.get(url, poll, HTTP_HX_REQUEST="true").status_code == 204
    _demote(world)
    fragment = client.get(url, poll, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    assert _approve_url(access_request) not in fragment.content.decode()


def test_the_request_page_and_the_api_offer_reject_only(world: World, client: Client) -> None:
    access_request = create(world)
    _demote(world)
    client.force_login(world.approver)

    body = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()

    assert _approve_url(access_request) not in body
    assert _reject_url(access_request) in body
    assert f"Alice Admin has the Observer role {WHERE} It cannot be approved; reject it instead." in body
    assert client.get(f"/api/requests/{access_request.pk}/").json()["actions"] == ["reject"]
    assert [row["actions"] for row in client.get("/api/approvals/").json()["results"]] == [["reject"]]
    # The API's approve still refuses, and says why.
    response = client.post(f"/api/requests/{access_request.pk}/approve/", {}, content_type="application/json")
    assert response.status_code == 409
    assert "It cannot be approved; reject it instead." in str(response.json())


# --- using the access -------------------------------------------------------------------


@pytest.mark.parametrize(("lose", "held"), LOSSES)
def test_no_certificate_once_the_requester_is_no_longer_admin(
    world: World, lose: Callable[[World], None], held: str
) -> None:
    grant = _active(world, world.web)
    lose(world)
    with pytest.raises(NotAllowed) as caught:
        services.grant_issue_certificate(grant=grant, user=world.requester, public_key=KEY)
    assert str(caught.value) == f"You have {held} {WHERE}"
    assert not LogbookEntry.objects.filter(action="certificate.issued").exists()


@pytest.mark.parametrize(("lose", "held"), LOSSES)
def test_no_extension_once_the_requester_is_no_longer_admin(
    world: World, lose: Callable[[World], None], held: str
) -> None:
    grant = _active(world, world.web)
    expires_at = AccessRequest.objects.get(pk=grant.request_id).expires_at
    lose(world)
    with pytest.raises(NotAllowed) as caught:
        services.access_request_extend(
            access_request=AccessRequest.objects.get(pk=grant.request_id), actor=world.requester, by=timedelta(hours=1)
        )
    assert str(caught.value) == f"You have {held} {WHERE}"
    assert AccessRequest.objects.get(pk=grant.request_id).expires_at == expires_at
    assert LogbookEntry.objects.filter(action="request.extend_denied", request_id=grant.request_id).exists()


@pytest.mark.parametrize(("lose", "held"), LOSSES)
def test_no_windows_password_once_the_requester_is_no_longer_admin(
    world: World, lose: Callable[[World], None], held: str
) -> None:
    grant = _active(world, world.windows)
    assert services.grant_reveal_password(grant=grant, user=world.requester) == "Sealed-Pass-0001"
    lose(world)
    with pytest.raises(NotAllowed, match=f"You have {held} on Acme Production"):
        services.grant_reveal_password(grant=grant, user=world.requester)
    assert LogbookEntry.objects.filter(action="grant.password_viewed").count() == 1  # the one before


@pytest.mark.parametrize(("lose", "held"), LOSSES)
@pytest.mark.parametrize("via", ["terminal", "cli-proxy", "cli"])
def test_no_session_once_the_requester_is_no_longer_admin(
    world: World, lose: Callable[[World], None], held: str, via: str
) -> None:
    grant = _active(world, world.web)
    lose(world)
    with pytest.raises(NotAllowed, match=f"You have {held} on Acme Production"):
        services.grant_start_session(grant=grant, user=world.requester, document="AWS-StartSSHSession", via=via)
    assert not LogbookEntry.objects.filter(action="session.started").exists()


@pytest.mark.parametrize(("lose", "held"), LOSSES)
def test_no_aws_credentials_once_the_requester_is_no_longer_admin(
    world: World, lose: Callable[[World], None], held: str
) -> None:
    grant = _active(world, world.web)
    lose(world)
    with pytest.raises(NotAllowed, match=f"You have {held} on Acme Production"):
        services.access_request_issue_aws_credentials(access_request=grant.request, user=world.requester)


def test_another_person_is_still_told_the_access_is_not_theirs(world: World) -> None:
    grant = _active(world, world.web)
    with pytest.raises(NotAllowed, match="Only the person who asked for this access can use it"):
        services.grant_issue_certificate(grant=grant, user=world.member, public_key=KEY)


# --- live access ends when the role goes ----------------------------------------------


def _approved(world: World, instance: Instance) -> AccessRequest:
    access_request = create(world, instances=[instance], account=instance.account)
    approver = world.approver if instance.account == world.prod else make_user("root", is_superuser=True)
    return services.access_request_approve(access_request=access_request, approver=approver)


def test_a_lowered_role_revokes_every_live_request_of_that_person_on_that_account(
    world: World,
    queued: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    running = _active(world, world.web)
    approved = _approved(world, world.db)
    pending = create(world, instances=[world.windows])
    elsewhere = _approved(world, world.stage_web)  # another account: still Admin there
    colleague = create(world, requester=world.member, instances=[world.web])
    _demote(world)

    with django_capture_on_commit_callbacks(execute=True):
        ended = services.access_requests_revoke_for_memberships(
            memberships=[(world.requester.pk, world.prod.pk), (world.member.pk, world.prod.pk)],
            actor=world.approver,
            via="admin",
        )

    assert sorted(ended) == sorted([running.request_id, approved.pk])
    running_request = AccessRequest.objects.get(pk=running.request_id)
    assert running_request.status == RequestStatus.COMPLETING  # its user is being removed
    assert running_request.end_reason == "revoked" and running_request.ended_by == world.approver
    assert Grant.objects.get(pk=running.pk).password_sealed is None
    assert ("deprovision_grant", running.pk) in queued
    # Nothing was done on an instance for the approved one: it is over at once.
    approved.refresh_from_db()
    assert (approved.status, approved.end_reason) == (RequestStatus.COMPLETED, "revoked")
    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=running.request_id)
    assert revoked.actor == world.approver
    assert revoked.detail == {
        "end_reason": "revoked",
        "why": f"Alice Admin has the Observer role {WHERE}",
        "role": "observer",
        "via": "admin",
    }
    # A pending request waits for the approver (who can no longer approve it); the rest stay.
    assert AccessRequest.objects.get(pk=pending.pk).status == RequestStatus.PENDING
    assert AccessRequest.objects.get(pk=elsewhere.pk).status == RequestStatus.APPROVED
    assert AccessRequest.objects.get(pk=colleague.pk).status == RequestStatus.PENDING


def test_a_membership_changed_but_still_admin_revokes_nothing(world: World) -> None:
    grant = _active(world, world.web)
    Membership.objects.filter(user=world.requester, account=world.prod).update(can_approve=True)
    assert (
        services.access_requests_revoke_for_memberships(
            memberships=[(world.requester.pk, world.prod.pk)], actor=None, via="saml"
        )
        == []
    )
    assert AccessRequest.objects.get(pk=grant.request_id).status == RequestStatus.ACTIVE
    assert not LogbookEntry.objects.filter(action="request.revoked").exists()


def test_provisioning_revokes_an_approved_request_whose_requester_lost_the_role_meanwhile(
    world: World,
    fleet: Any,
) -> None:
    access_request = _approved(world, world.web)
    _remove(world)
    access_request = activate(access_request)
    assert (access_request.status, access_request.end_reason) == (RequestStatus.COMPLETED, "revoked")
    assert access_request.ended_by is None
    assert Grant.objects.get(request=access_request).status == GrantStatus.REMOVED
    assert fleet.calls == [] and fleet.batch_calls == []  # nothing was run on the instance
    assert "request.provisioning" not in actions(access_request)
    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=access_request.pk)
    assert revoked.actor is None and revoked.detail["via"] == "provisioning" and revoked.detail["role"] == "none"
