"""Approval policies: N of M approvals, automatic approval, deny rules, each decision in the Logbook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import ApprovalPolicy, RequestApproval, User
from audit.models import LogbookEntry
from audit.refusals import logbook_refusals_flush
from core.errors import NotAllowed, RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, Instance, RequestStatus
from tests.conftest import World
from tests.factories import make_instance, make_membership, make_user
from workers import tasks


@pytest.fixture(autouse=True)
def no_workers(settings: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    settings.PASSPORT_IAM_CHECK = False
    provisioning: list[int] = []
    monkeypatch.setattr(tasks.begin_provisioning, "delay", provisioning.append)
    monkeypatch.setattr(tasks.send_notification, "delay", lambda kind, request_id: None)
    return provisioning


@pytest.fixture
def second_approver(world: World) -> User:
    person = make_user("grace")
    make_membership(person, world.prod, "admin", can_approve=True)
    return person


def create(world: World, *, requester: User | None = None, **extra: Any) -> AccessRequest:
    return services.access_request_create(
        requester=requester or world.requester,
        account=world.prod,
        instances=extra.pop("instances", [world.web]),
        reason=extra.pop("reason", "rotate the logs"),
        **extra,
    )


def entries(action: str, access_request: AccessRequest | None = None) -> list[LogbookEntry]:
    found = LogbookEntry.objects.filter(action=action)
    if access_request is not None:
        found = found.filter(request_id=access_request.pk)
    return list(found.order_by("id"))


def test_without_a_policy_one_approval_suffices_and_nothing_extra_is_logged(world: World) -> None:
    access_request = create(world)
    services.access_request_approve(access_request=access_request, approver=world.approver)
    assert access_request.status == RequestStatus.APPROVED
    assert entries("approval_policy.decided") == []
    assert not RequestApproval.objects.exists()


def test_two_of_m_approvals(
    world: World, second_approver: User, django_capture_on_commit_callbacks: Any, no_workers: list[int]
) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    access_request = create(world)
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_approve(access_request=access_request, approver=world.approver)
        # The same approver again does not count twice.
        services.access_request_approve(access_request=access_request, approver=world.approver)
    assert access_request.status == RequestStatus.PENDING
    assert no_workers == []
    recorded = entries("request.approval_recorded", access_request)
    assert len(recorded) == 1
    assert recorded[0].detail == {"approvals": 1, "required": 2, "rule": "approvals_required=2"}

    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_approve(access_request=access_request, approver=second_approver)
    assert access_request.status == RequestStatus.APPROVED
    assert access_request.decided_by == second_approver
    assert no_workers == [access_request.pk]
    assert [entry.detail["outcome"] for entry in entries("approval_policy.decided", access_request)] == [
        "needs_approval"
    ]


def test_nobody_approves_their_own_request_even_when_several_are_needed(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    make_membership(world.member, world.staging, "admin")
    world.member.memberships.filter(account=world.prod).update(can_approve=True)
    access_request = create(world, requester=world.member)
    with pytest.raises(NotAllowed):
        services.access_request_approve(access_request=access_request, approver=world.member)
    assert not RequestApproval.objects.exists()


def test_auto_approval_for_internal_engineers_with_a_ticket_and_a_short_duration(
    world: World, django_capture_on_commit_callbacks: Any, no_workers: list[int]
) -> None:
    ApprovalPolicy.objects.create(account=world.prod, auto_approve=True)
    world.requester.identity_store = User.IdentityStore.INTERNAL
    world.requester.save(update_fields=["identity_store"])
    with django_capture_on_commit_callbacks(execute=True):
        access_request = create(world, ticket="INC-42", duration=timedelta(hours=2))
    assert access_request.status == RequestStatus.APPROVED
    assert access_request.decided_by is None
    assert no_workers == [access_request.pk]
    approved = entries("request.approved", access_request)
    assert len(approved) == 1 and approved[0].actor_label == "system"
    assert approved[0].detail["automatic"] is True
    assert approved[0].detail["rule"] == (
        "auto_approve: identity_store=internal and ticket named and duration<=2 h and no administrator rights"
    )


@pytest.mark.parametrize(
    ("store", "ticket", "hours"),
    # (An internal engineer without a ticket is refused outright: tests/accounts/test_saml.py.)
    [("customer", "INC-1", 1), ("internal", "INC-1", 3)],
)
def test_auto_approval_needs_every_condition(world: World, store: str, ticket: str, hours: int) -> None:
    ApprovalPolicy.objects.create(account=world.prod, auto_approve=True)
    world.requester.identity_store = store
    world.requester.save(update_fields=["identity_store"])
    access_request = create(world, ticket=ticket, duration=timedelta(hours=hours))
    assert access_request.status == RequestStatus.PENDING
    assert entries("approval_policy.decided", access_request)[0].detail["outcome"] == "needs_approval"


def test_deny_rules_refuse_the_request_and_say_which(world: World) -> None:
    ApprovalPolicy.objects.create(
        account=world.prod, deny_without_ticket=True, deny_admin_rights=True, deny_over_duration=timedelta(hours=4)
    )
    with pytest.raises(RequestRuleError) as caught:
        create(world, admin_rights=True, duration=timedelta(hours=6))
    assert caught.value.errors["__all__"] == [
        "Acme Production requires a ticket reference for every request.",
        "Acme Production does not allow administrator rights (sudo, Administrators) through Passport.",
        "Acme Production allows at most 4 h per request.",
    ]
    assert not AccessRequest.objects.exists()
    decided = entries("approval_policy.decided")
    assert decided[0].detail["outcome"] == "deny"
    assert decided[0].detail["rule"] == "deny_without_ticket, deny_admin_rights, deny_over_duration"
    assert entries("request.create_denied")


@pytest.mark.parametrize("domain_controller", [False, True])
def test_the_admin_rights_deny_rule_refuses_a_windows_request(world: World, domain_controller: bool) -> None:
    """On Windows admin rights mean Administrators (Domain Admins on a DC): refused like sudo."""
    ApprovalPolicy.objects.create(account=world.prod, deny_admin_rights=True)
    windows = world.windows
    if domain_controller:
        windows = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[windows], ticket="CHG-7", admin_rights=True)
    assert caught.value.errors["__all__"] == [
        "Acme Production does not allow administrator rights (sudo, Administrators) through Passport."
    ]
    assert not AccessRequest.objects.exists()
    assert entries("approval_policy.decided")[0].detail["rule"] == "deny_admin_rights"

    # Without admin rights (a Remote Desktop user only) the same request is accepted.
    access_request = create(world, instances=[windows], ticket="CHG-7")
    assert access_request.status == RequestStatus.PENDING and not access_request.admin_rights


@pytest.mark.parametrize("platform", [Instance.Platform.LINUX, Instance.Platform.WINDOWS])
def test_auto_approval_leaves_admin_rights_to_an_approver(world: World, platform: str) -> None:
    ApprovalPolicy.objects.create(account=world.prod, auto_approve=True)
    world.requester.identity_store = User.IdentityStore.INTERNAL
    world.requester.save(update_fields=["identity_store"])
    instance = world.windows if platform == Instance.Platform.WINDOWS else world.web

    access_request = create(world, instances=[instance], ticket="INC-42", admin_rights=True)

    assert access_request.status == RequestStatus.PENDING
    decided = entries("approval_policy.decided", access_request)[0].detail
    assert decided == {"outcome": "needs_approval", "rule": "approvals_required=1"}
    assert not entries("request.approved", access_request)


@pytest.mark.parametrize("platform", [Instance.Platform.LINUX, Instance.Platform.WINDOWS])
def test_auto_approval_of_admin_rights_is_a_choice_of_the_policy(
    world: World, platform: str, django_capture_on_commit_callbacks: Any
) -> None:
    ApprovalPolicy.objects.create(account=world.prod, auto_approve=True, auto_approve_admin_rights=True)
    world.requester.identity_store = User.IdentityStore.INTERNAL
    world.requester.save(update_fields=["identity_store"])
    instance = world.windows if platform == Instance.Platform.WINDOWS else world.web

    with django_capture_on_commit_callbacks(execute=True):
        access_request = create(world, instances=[instance], ticket="INC-42", admin_rights=True)

    assert access_request.status == RequestStatus.APPROVED
    rule = entries("request.approved", access_request)[0].detail["rule"]
    assert rule == "auto_approve: identity_store=internal and ticket named and duration<=2 h"


def test_a_request_within_the_rules_is_accepted(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, deny_without_ticket=True, deny_admin_rights=True)
    access_request = create(world, ticket="CHG-7")
    assert access_request.status == RequestStatus.PENDING


# --- extensions: the policy holds for the total, not only for what was first asked --------


def active(access_request: AccessRequest) -> AccessRequest:
    """Where provisioning leaves an approved request: active, its clock running."""
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    access_request.refresh_from_db()
    return access_request


def extend(world: World, access_request: AccessRequest, hours: float) -> AccessRequest:
    return services.access_request_extend(
        access_request=access_request, actor=world.requester, by=timedelta(hours=hours)
    )


def auto_approving(world: World, *, max_hours: int) -> None:
    ApprovalPolicy.objects.create(
        account=world.prod,
        auto_approve=True,
        auto_approve_identity_store="",
        auto_approve_requires_ticket=False,
        auto_approve_max_duration=timedelta(hours=max_hours),
    )


def test_an_extension_past_deny_over_duration_is_refused_and_recorded(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, deny_over_duration=timedelta(hours=2))
    access_request = create(world, duration=timedelta(hours=1))
    services.access_request_approve(access_request=access_request, approver=world.approver)
    access_request = active(access_request)

    with pytest.raises(RequestRuleError) as caught:
        extend(world, access_request, 11)

    assert caught.value.errors == {
        "by": [
            "Acme Production allows at most 2 h per request, extensions included; "
            "this request has 1 h, so it can be extended by at most 1 h."
        ]
    }
    access_request.refresh_from_db()
    assert access_request.total_duration == timedelta(hours=1)
    assert not entries("request.extended", access_request)
    decided = entries("approval_policy.decided", access_request)[-1]
    assert decided.actor_label == "system"
    assert decided.detail == {
        "outcome": "deny",
        "rule": "deny_over_duration",
        "extension": True,
        "by_minutes": 660,
        "total_minutes": 720,
    }
    assert entries("request.extend_denied", access_request)[0].detail["denied"] == caught.value.errors

    # Up to the limit is fine: 2 h in all.
    extend(world, access_request, 1)
    assert access_request.total_duration == timedelta(hours=2)


def test_an_automatically_approved_request_is_not_extended_past_what_the_rule_approves(world: World) -> None:
    auto_approving(world, max_hours=1)
    access_request = create(world, duration=timedelta(hours=1))
    assert access_request.status == RequestStatus.APPROVED and access_request.decided_by is None
    access_request = active(access_request)

    with pytest.raises(RequestRuleError) as caught:
        extend(world, access_request, 11)

    assert caught.value.errors == {
        "by": [
            f"Request #{access_request.pk} was approved automatically, and Acme Production approves at most 1 h "
            "per request that way; more time needs an approver. Ask for the time you need in a new request."
        ]
    }
    access_request.refresh_from_db()
    assert access_request.total_duration == timedelta(hours=1)
    decided = entries("approval_policy.decided", access_request)[-1].detail
    assert decided["outcome"] == "needs_approval" and decided["extension"] is True
    assert decided["rule"] == "auto_approve: duration<=1 h and no administrator rights"
    assert entries("request.extend_denied", access_request)


def test_an_automatically_approved_request_extends_as_far_as_the_rule_approves(world: World) -> None:
    auto_approving(world, max_hours=2)
    access_request = active(create(world, duration=timedelta(hours=1)))

    extend(world, access_request, 1)

    assert access_request.total_duration == timedelta(hours=2)
    decided = entries("approval_policy.decided", access_request)[-1].detail
    assert decided == {
        "outcome": "auto_approve",
        "rule": "auto_approve: duration<=2 h and no administrator rights",
        "extension": True,
        "by_minutes": 60,
        "total_minutes": 120,
    }
    with pytest.raises(RequestRuleError, match="approves at most 2 h per request that way"):
        extend(world, access_request, 0.25)


def test_an_automatically_approved_request_is_not_extended_once_the_rule_is_gone(world: World) -> None:
    auto_approving(world, max_hours=2)
    access_request = active(create(world, duration=timedelta(hours=1)))
    ApprovalPolicy.objects.filter(account=world.prod).update(auto_approve=False)

    with pytest.raises(RequestRuleError) as caught:
        extend(world, access_request, 0.5)

    assert caught.value.errors["by"] == [
        f"Request #{access_request.pk} was approved automatically, and Acme Production no longer approves it "
        "that way; more time needs an approver. Ask for the time you need in a new request."
    ]

    assert access_request.total_duration == timedelta(hours=1)


def test_a_request_an_approver_approved_extends_past_the_automatic_limit(world: World) -> None:
    """The approver decided on this request, and access may be extended within 12 h and the deny rules."""
    auto_approving(world, max_hours=1)
    access_request = create(world, duration=timedelta(hours=3))
    assert access_request.status == RequestStatus.PENDING
    services.access_request_approve(access_request=access_request, approver=world.approver)
    access_request = active(access_request)

    extend(world, access_request, 2)

    assert access_request.total_duration == timedelta(hours=5)


def test_a_deny_rule_added_later_stops_extensions(world: World) -> None:
    access_request = create(world, duration=timedelta(hours=1), admin_rights=True)
    services.access_request_approve(access_request=access_request, approver=world.approver)
    access_request = active(access_request)
    ApprovalPolicy.objects.create(account=world.prod, deny_admin_rights=True)

    with pytest.raises(RequestRuleError) as caught:
        extend(world, access_request, 1)

    assert caught.value.errors == {
        "by": [
            "Acme Production does not allow administrator rights (sudo, Administrators) through Passport; "
            "this request can no longer be extended."
        ]
    }
    assert access_request.total_duration == timedelta(hours=1)


def test_a_request_a_deny_rule_refuses_again_and_again_is_one_decision_and_a_count(
    world: World, time_machine: Any
) -> None:
    """The policy's decision goes with the refusal it caused (``request.create_denied``, aggregated
    as every refusal of a signed-in person is): a script asking again and again writes each once
    per window, and the window's summary counts them all."""
    time_machine.move_to(timezone.now().replace(minute=0, second=5), tick=False)
    ApprovalPolicy.objects.create(account=world.prod, deny_without_ticket=True)
    for _ in range(5):
        with pytest.raises(RequestRuleError):
            create(world)
    decided = entries("approval_policy.decided")
    assert [(entry.actor_label, entry.detail["outcome"], entry.detail["rule"]) for entry in decided] == [
        ("system", "deny", "deny_without_ticket")
    ]
    assert decided[0].instance_id_list == [world.web.instance_id]
    (denied,) = entries("request.create_denied")
    time_machine.move_to(timezone.now() + timedelta(minutes=6), tick=False)
    assert logbook_refusals_flush() == 1
    summary = LogbookEntry.objects.get(action="request.create_denied", detail__summary=True)
    assert summary.detail["counts"] == [
        {"source": f"user:{world.requester.pk}", "reason": denied.detail["refusal_key"], "count": 5}
    ]
    # Another refusal (a ticket named: another rule, other messages) is written at once, with its decision.
    ApprovalPolicy.objects.filter(account=world.prod).update(deny_admin_rights=True)
    with pytest.raises(RequestRuleError):
        create(world, ticket="CHG-1", admin_rights=True)
    assert [entry.detail["rule"] for entry in entries("approval_policy.decided")] == [
        "deny_without_ticket",
        "deny_admin_rights",
    ]


def test_an_extension_a_deny_rule_refuses_again_and_again_is_one_decision_and_a_count(
    world: World, time_machine: Any
) -> None:
    time_machine.move_to(timezone.now().replace(minute=0, second=5), tick=False)
    ApprovalPolicy.objects.create(account=world.prod, deny_over_duration=timedelta(hours=2))
    access_request = create(world, duration=timedelta(hours=1))
    services.access_request_approve(access_request=access_request, approver=world.approver)
    access_request = active(access_request)
    for _ in range(5):
        with pytest.raises(RequestRuleError):
            extend(world, access_request, 11)
    assert len(entries("request.extend_denied", access_request)) == 1
    decided = [entry.detail for entry in entries("approval_policy.decided", access_request)]
    assert [(detail["outcome"], detail.get("extension")) for detail in decided] == [
        ("needs_approval", None),
        ("deny", True),
    ]
