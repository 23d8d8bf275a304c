"""The page, the API and the services agree on what each person may do to a request.

Every status x every persona x the edge cases that used to split them (the 12 h budget spent,
a grant already claimed, the clock run out, the account's policy allowing no more time, the
requester no longer an Admin of the account): the buttons on the page, the ``actions`` of the
API (which the CLI prints) and what the services accept are the same set.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApprovalPolicy, Membership, User
from core.errors import RequestRuleError
from requests_app import selectors, services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.rules import ACTION_NAMES
from tests.conftest import World
from tests.factories import make_membership, make_user

ROLES = ("requester", "approver", "other_approver", "outsider", "auditor", "site_admin")
EDGES = ("budget_spent", "grants_touched", "clock_run_out", "policy_spent", "auto_spent", "requester_not_admin")

GRANT_STATUS_FOR = {
    RequestStatus.PENDING: GrantStatus.PENDING,
    RequestStatus.APPROVED: GrantStatus.PENDING,
    RequestStatus.PROVISIONING: GrantStatus.PROVISIONING,
    RequestStatus.ACTIVE: GrantStatus.READY,
    RequestStatus.COMPLETING: GrantStatus.REMOVING,
}
CASES = [(status, "") for status in RequestStatus.values] + [
    (RequestStatus.ACTIVE, "budget_spent"),
    (RequestStatus.APPROVED, "grants_touched"),
    (RequestStatus.ACTIVE, "clock_run_out"),
    (RequestStatus.ACTIVE, "policy_spent"),
    (RequestStatus.ACTIVE, "auto_spent"),
    (RequestStatus.PENDING, "requester_not_admin"),
    (RequestStatus.ACTIVE, "requester_not_admin"),
]


class _Undo(Exception):
    pass


def _person(world: World, role: str) -> User:
    if role == "other_approver":
        other = make_user("olga")
        make_membership(other, world.prod, "admin", can_approve=True)
        return other
    if role == "site_admin":
        return make_user("root", is_superuser=True, is_staff=True)
    return getattr(world, role)


def _build(world: World, status: str, edge: str) -> AccessRequest:
    now = timezone.now()
    fields: dict[str, object] = {}
    if status in (RequestStatus.ACTIVE, RequestStatus.COMPLETING, RequestStatus.COMPLETED, RequestStatus.EXPIRED):
        fields.update(activated_at=now - timedelta(minutes=10), expires_at=now + timedelta(minutes=50))
    if edge == "budget_spent":
        # 10 minutes of the 12 h left: less than the shortest extension.
        fields.update(duration=timedelta(hours=11, minutes=50))
    if edge == "clock_run_out":
        fields.update(expires_at=now - timedelta(minutes=1))
    if edge == "policy_spent":
        # The account allows 1 h in all, and the request has it: no extension step is allowed.
        ApprovalPolicy.objects.create(account=world.prod, deny_over_duration=timedelta(hours=1))
        fields.update(duration=timedelta(hours=1))
    if edge == "auto_spent":
        # Approved by the rule, which covers 1 h; more would need an approver, which an extension never gets.
        ApprovalPolicy.objects.create(
            account=world.prod,
            auto_approve=True,
            auto_approve_requires_ticket=False,
            auto_approve_max_duration=timedelta(hours=1),
        )
        fields.update(duration=timedelta(minutes=50), decided_at=now - timedelta(minutes=10))
    if edge == "requester_not_admin":
        # Lowered after asking (by an admin, or the identity provider at a sign-in).
        Membership.objects.filter(user=world.requester, account=world.prod).update(role=Membership.Role.OBSERVER)
    access_request = AccessRequest.objects.create(
        requester=world.requester, account=world.prod, reason="deploy", status=status, **fields
    )
    grant_status = GRANT_STATUS_FOR.get(status, GrantStatus.REMOVED)
    if edge == "grants_touched":
        grant_status = GrantStatus.PROVISIONING
    Grant.objects.create(request=access_request, instance=world.web, username="rs-alice", status=grant_status)
    Grant.objects.create(request=access_request, instance=world.db, username="rs-alice", status=GrantStatus.PENDING)
    return access_request


def _page_actions(client: Client, access_request: AccessRequest) -> set[str]:
    response = client.get(reverse("requests:detail", args=[access_request.pk]))
    if response.status_code == 404:
        return set()
    assert response.status_code == 200
    html = response.content.decode()
    return {
        name
        for name in ACTION_NAMES
        # A form posting the action, or a link to its confirm page (Reject, Cancel, Complete confirm first).
        if f'action="{reverse("requests:action", args=[access_request.pk, name])}"' in html
        or f'href="{reverse("requests:action", args=[access_request.pk, name])}"' in html
    }


def _api_actions(client: Client, access_request: AccessRequest) -> set[str]:
    response = client.get(f"/api/requests/{access_request.pk}/")
    if response.status_code == 404:
        return set()
    assert response.status_code == 200
    return set(response.json()["actions"])


def _service_accepts(access_request_pk: int, user: User, action: str) -> bool:
    """Whether the service changes the request for this person; every change is rolled back."""
    try:
        with transaction.atomic():
            access_request = AccessRequest.objects.select_related("account").get(pk=access_request_pk)
            before = (access_request.status, access_request.extended_by)
            try:
                if action == "approve":
                    services.access_request_approve(access_request=access_request, approver=user)
                elif action == "reject":
                    services.access_request_reject(access_request=access_request, approver=user)
                elif action == "cancel":
                    services.access_request_cancel(access_request=access_request, actor=user)
                elif action == "extend":
                    services.access_request_extend(access_request=access_request, actor=user, by=services.MIN_DURATION)
                else:
                    services.access_request_complete(access_request=access_request, actor=user)
            except RequestRuleError:
                accepted = False
            else:
                access_request.refresh_from_db()
                accepted = (access_request.status, access_request.extended_by) != before
            raise _Undo(accepted)
    except _Undo as undo:
        return bool(undo.args[0])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("status", "edge"), CASES)
def test_page_api_and_services_agree(world: World, client: Client, status: str, edge: str, role: str) -> None:
    access_request = _build(world, status, edge)
    user = _person(world, role)
    client.force_login(user)

    page = _page_actions(client, access_request)
    api = _api_actions(client, access_request)
    accepted = {name for name in ACTION_NAMES if _service_accepts(access_request.pk, user, name)}

    assert page == api == accepted, f"page {sorted(page)}, API {sorted(api)}, services {sorted(accepted)}"


def test_the_edge_cases_are_refused_with_a_reason(world: World) -> None:
    spent = _build(world, RequestStatus.ACTIVE, "budget_spent")
    touched = _build(world, RequestStatus.APPROVED, "grants_touched")

    spent_actions = selectors.access_request_actions(access_request=spent, user=world.requester)
    touched_actions = selectors.access_request_actions(access_request=touched, user=world.requester)

    assert spent_actions.available == ["complete"]
    assert "at most 0 h 10 min more" in spent_actions.extend.reason
    assert touched_actions.available == ["complete"]
    assert "complete the request instead" in touched_actions.cancel.reason
    with pytest.raises(RequestRuleError, match="at most 0 h 10 min more"):
        services.access_request_extend(access_request=spent, actor=world.requester, by=services.MIN_DURATION)
    with pytest.raises(RequestRuleError, match="complete the request instead"):
        services.access_request_cancel(access_request=touched, actor=world.requester)


def test_an_account_policy_at_its_limit_offers_no_extension_and_says_why(world: World) -> None:
    spent = _build(world, RequestStatus.ACTIVE, "policy_spent")

    spent_actions = selectors.access_request_actions(access_request=spent, user=world.requester)

    assert spent_actions.available == ["complete"]
    refusal = (
        "Acme Production allows at most 1 h per request, extensions included; this request has 1 h, "
        "so it can no longer be extended."
    )
    assert spent_actions.extend.reason == refusal
    with pytest.raises(RequestRuleError, match=refusal):
        services.access_request_extend(access_request=spent, actor=world.requester, by=services.MIN_DURATION)


def test_a_requester_no_longer_admin_is_not_offered_for_approval(world: World) -> None:
    pending = _build(world, RequestStatus.PENDING, "requester_not_admin")

    approver_actions = selectors.access_request_actions(access_request=pending, user=world.approver)

    assert approver_actions.available == ["reject"]
    refusal = (
        "Alice Admin has the Observer role on Acme Production (111111111111) now; only an Admin of the account "
        "may have access to its instances. It cannot be approved; reject it instead."
    )
    assert approver_actions.approve.reason == refusal
    with pytest.raises(RequestRuleError) as caught:
        services.access_request_approve(access_request=pending, approver=world.approver)
    assert caught.value.errors == {"__all__": [refusal]}


def test_the_expected_people_may_act(world: World) -> None:
    """A few anchors, so agreement on the wrong answer cannot pass."""
    pending = _build(world, RequestStatus.PENDING, "")
    active = _build(world, RequestStatus.ACTIVE, "")

    def available(access_request: AccessRequest, user: User) -> list[str]:
        return selectors.access_request_actions(access_request=access_request, user=user).available

    assert available(pending, world.requester) == ["cancel"]
    assert available(pending, world.approver) == ["approve", "reject"]
    assert available(pending, world.auditor) == []
    assert available(active, world.requester) == ["extend", "complete"]
    assert available(active, world.approver) == ["complete"]
    assert available(active, world.member) == []
