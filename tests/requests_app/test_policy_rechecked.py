"""An account's approval policy holds for a request's whole length: a deny rule an admin sets while
a request waits is asked again at its approval and when its provisioning starts.

A request the policy now denies cannot be approved (it stays pending, for the approver to reject,
and the pages say why in place of Approve); one approved before the rule was set, automatically
or by a person, is rejected by Passport before anything is created on an instance.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApprovalPolicy, User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from tests.conftest import World
from tests.factories import make_membership, make_user
from tests.fakes.fleet import FakeFleet
from tests.requests_app.test_services import actions, create
from workers import tasks

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")

SUDO = "Acme Production does not allow administrator rights (sudo, Administrators) through Passport."
LENGTH = "Acme Production allows at most 2 h per request."
TICKET = "Acme Production requires a ticket reference for every request."

# The rule set while the request waits, what the request asks that breaks it, and the refusal.
RULES: list[Any] = [
    pytest.param({"deny_admin_rights": True}, {"admin_rights": True}, SUDO, id="deny_admin_rights"),
    pytest.param({"deny_over_duration": timedelta(hours=2)}, {"duration": timedelta(hours=8)}, LENGTH, id="length"),
    pytest.param({"deny_without_ticket": True}, {"ticket": ""}, TICKET, id="deny_without_ticket"),
]


def _refusal(message: str, rule: str) -> str:
    return (
        f"{message} That rule of the account's approval policy ({rule}) was set after this request was made: "
        "it cannot be approved; reject it instead."
    )


def _asking(**asks: Any) -> dict[str, Any]:
    return {"ticket": "CHG-7", "duration": timedelta(hours=1), **asks}


def _set(world: World, **rule: Any) -> None:
    """The account's admin changes its policy (made if it had none)."""
    ApprovalPolicy.objects.update_or_create(account=world.prod, defaults=rule)


@pytest.fixture
def mails(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(tasks.send_notification, "delay", lambda kind, request_id: sent.append((kind, request_id)))
    return sent


# --- approval ---------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "asks", "message"), RULES)
def test_approving_a_request_a_rule_set_while_it_waited_denies_is_refused_and_says_which(
    world: World, queued: list[tuple[str, int]], rule: dict[str, Any], asks: dict[str, Any], message: str
) -> None:
    ApprovalPolicy.objects.create(account=world.prod)
    access_request = create(world, **_asking(**asks))
    _set(world, **rule)

    with pytest.raises(RequestRuleError) as caught:
        services.access_request_approve(access_request=access_request, approver=world.approver)

    assert caught.value.code == "conflict"
    (name,) = rule
    assert caught.value.errors == {"__all__": [_refusal(message, name)]}
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING and access_request.decided_by is None
    assert queued == []  # nothing is provisioned
    denied = LogbookEntry.objects.get(action="request.approve_denied", request_id=access_request.pk)
    assert denied.actor == world.approver and denied.detail["denied"] == caught.value.errors
    assert "request.approved" not in actions(access_request)
    # The approver can reject it.
    services.access_request_reject(access_request=access_request, approver=world.approver, note="Policy changed.")
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.REJECTED


def test_every_rule_it_breaks_is_named(world: World) -> None:
    access_request = create(world, **_asking(admin_rights=True, duration=timedelta(hours=8)))
    _set(world, deny_admin_rights=True, deny_over_duration=timedelta(hours=2))

    with pytest.raises(RequestRuleError) as caught:
        services.access_request_approve(access_request=access_request, approver=world.approver)

    assert caught.value.errors == {
        "__all__": [
            f"{SUDO} {LENGTH} Those rules of the account's approval policy (deny_admin_rights, deny_over_duration) "
            "were set after this request was made: it cannot be approved; reject it instead."
        ]
    }


def test_a_request_within_the_tightened_policy_is_approved(world: World) -> None:
    access_request = create(world, **_asking(duration=timedelta(hours=2)))
    _set(world, deny_admin_rights=True, deny_over_duration=timedelta(hours=2), deny_without_ticket=True)
    approved = services.access_request_approve(access_request=access_request, approver=world.approver)
    assert approved.status == RequestStatus.APPROVED


def test_the_approval_goes_through_once_the_rule_is_lifted(world: World) -> None:
    access_request = create(world, **_asking(admin_rights=True))
    _set(world, deny_admin_rights=True)
    with pytest.raises(RequestRuleError):
        services.access_request_approve(access_request=access_request, approver=world.approver)
    _set(world, deny_admin_rights=False)
    approved = services.access_request_approve(access_request=access_request, approver=world.approver)
    assert approved.status == RequestStatus.APPROVED


def test_each_of_several_approvals_is_refused(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    second = make_user("grace")
    make_membership(second, world.prod, "admin", can_approve=True)
    access_request = create(world, **_asking(admin_rights=True))
    services.access_request_approve(access_request=access_request, approver=world.approver)  # one of two
    _set(world, deny_admin_rights=True)

    with pytest.raises(RequestRuleError, match="deny_admin_rights"):
        services.access_request_approve(access_request=access_request, approver=second)

    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.PENDING
    assert not LogbookEntry.objects.filter(action="request.approval_recorded", actor_id=second.pk).exists()


# --- the pages and the API offer no approval they would refuse ---------------------------


def test_the_request_page_the_queue_and_the_api_offer_reject_only_and_say_why(world: World, client: Client) -> None:
    denied = create(world, **_asking(admin_rights=True))
    other = make_user("erin-2")
    make_membership(other, world.prod, "admin")
    fine = create(world, requester=other, **_asking())
    _set(world, deny_admin_rights=True)
    client.force_login(world.approver)
    refusal = _refusal(SUDO, "deny_admin_rights")
    approve = f'action="{reverse("requests:action", args=[denied.pk, "approve"])}"'
    reject = f'href="{reverse("requests:action", args=[denied.pk, "reject"])}"'

    page = client.get(reverse("requests:detail", args=[denied.pk])).content.decode().replace("&#x27;", "'")
    assert approve not in page and reject in page
    assert 'data-testid="approve-refusal"' in page and refusal in page

    queue = client.get(reverse("requests:approvals")).content.decode().replace("&#x27;", "'")
    row = queue.split(f'data-request="{denied.pk}"')[1].split("</tr>")[0]
    assert approve not in row and reject in row and refusal in row
    assert f'action="{reverse("requests:action", args=[fine.pk, "approve"])}"' in queue  # not denied: Approve

    assert client.get(f"/api/requests/{denied.pk}/").json()["actions"] == ["reject"]
    listed = {row["id"]: row["actions"] for row in client.get("/api/approvals/").json()["results"]}
    assert listed == {denied.pk: ["reject"], fine.pk: ["approve", "reject"]}
    response = client.post(f"/api/requests/{denied.pk}/approve/", {}, content_type="application/json")
    assert response.status_code == 409
    assert response.json() == {"detail": refusal}
    assert AccessRequest.objects.get(pk=denied.pk).status == RequestStatus.PENDING


# --- provisioning -----------------------------------------------------------------------


def _set_unannounced(world: World, **rule: Any) -> None:
    """The policy changed by a queryset's update() (a script): no save, so nothing is asked of the
    live requests until their provisioning starts."""
    ApprovalPolicy.objects.get_or_create(account=world.prod)
    ApprovalPolicy.objects.filter(account=world.prod).update(**rule)


@pytest.mark.parametrize(("rule", "asks", "message"), RULES)
@pytest.mark.parametrize(
    ("set_rule", "via"),
    [
        pytest.param(_set, "policy_changed", id="saved: rejected at the save"),
        pytest.param(_set_unannounced, "provisioning", id="update(): rejected at provisioning"),
    ],
)
def test_an_approved_request_a_rule_set_since_denies_is_rejected_before_provisioning(
    world: World,
    fleet: FakeFleet,
    mails: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
    rule: dict[str, Any],
    asks: dict[str, Any],
    message: str,
    set_rule: Any,
    via: str,
) -> None:
    access_request = create(world, **_asking(**asks))
    services.access_request_approve(access_request=access_request, approver=world.approver, note="ok")
    with django_capture_on_commit_callbacks(execute=True):
        set_rule(world, **rule)

    with django_capture_on_commit_callbacks(execute=True):
        handed_out = services.access_request_begin_provisioning(request_id=access_request.pk)

    assert handed_out == []
    assert fleet.calls == [] and fleet.batch_calls == []  # nothing was run on an instance
    access_request.refresh_from_db()
    (name,) = rule
    note = (
        f"Refused before provisioning: the account's approval policy, changed since the approval, denies it ({name})."
    )
    assert access_request.status == RequestStatus.REJECTED
    assert (access_request.decided_by, access_request.decision_note) == (None, note)
    assert access_request.ended_at is not None
    assert list(Grant.objects.filter(request=access_request).values_list("status", flat=True)) == [GrantStatus.REMOVED]
    assert "request.provisioning" not in actions(access_request)
    rejected = LogbookEntry.objects.get(action="request.rejected", request_id=access_request.pk)
    assert rejected.actor is None
    assert rejected.detail == {"note": note, "rule": name, "why": [message], "via": via}
    assert mails == [("rejected", access_request.pk)]
    # Another start (a duplicate task, the sweep) changes nothing.
    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []
    assert LogbookEntry.objects.filter(action="request.rejected", request_id=access_request.pk).count() == 1


def test_an_automatically_approved_request_is_rejected_too(world: World, fleet: FakeFleet) -> None:
    ApprovalPolicy.objects.create(account=world.prod, auto_approve=True, auto_approve_requires_ticket=False)
    world.requester.identity_store = User.IdentityStore.INTERNAL
    world.requester.save(update_fields=["identity_store"])
    access_request = create(world, **_asking(duration=timedelta(hours=2)))
    assert access_request.status == RequestStatus.APPROVED and access_request.decided_by is None
    _set(world, deny_over_duration=timedelta(hours=1))

    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []

    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.REJECTED
    assert fleet.calls == []


def test_an_approved_request_within_the_policy_is_provisioned(world: World) -> None:
    access_request = create(world, **_asking(duration=timedelta(hours=2)))
    services.access_request_approve(access_request=access_request, approver=world.approver)
    _set(world, deny_admin_rights=True, deny_over_duration=timedelta(hours=2), deny_without_ticket=True)

    assert len(services.access_request_begin_provisioning(request_id=access_request.pk)) == 1
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.PROVISIONING


def test_the_rejected_requests_page_says_why(world: World, client: Client) -> None:
    access_request = create(world, **_asking(admin_rights=True))
    services.access_request_approve(access_request=access_request, approver=world.approver)
    _set(world, deny_admin_rights=True)
    services.access_request_begin_provisioning(request_id=access_request.pk)
    client.force_login(world.requester)

    page = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode().replace("&#x27;", "'")

    assert "the account's approval policy, changed since the approval, denies it (deny_admin_rights)" in page
