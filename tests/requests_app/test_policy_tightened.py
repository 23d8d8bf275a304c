"""An account's approval policy made stricter while its requests are live.

A policy holds for a request's whole length. When an admin saves a stricter one, Passport asks it
again of every live request of the account at once: a deny rule it now breaks revokes an active or
provisioning request (and rejects an approved one); a lower ``deny_over_duration`` shortens an
active request's end (never lengthens it) and moves the hosts' account expiry with it. At
provisioning start, a request approved with fewer approvals than the policy now asks for, or
approved automatically by a rule that no longer approves it, goes back to pending.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from accounts.models import ApprovalPolicy, RequestApproval, User
from audit.models import LogbookEntry
from fleet import CommandResult
from requests_app import services
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, RequestStatus
from tests.conftest import World
from tests.factories import make_membership, make_user
from tests.fakes.fleet import FakeFleet, ok
from tests.requests_app.test_services import actions, activate, active, approved, create

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")

T0 = datetime(2030, 3, 4, 13, 0, tzinfo=UTC)


@pytest.fixture
def frozen(time_machine: Any) -> Any:
    time_machine.move_to(T0, tick=False)
    return time_machine


def _policy_saved(world: World, **rule: object) -> None:
    """What the admin's inline form does: a save of the account's policy row."""
    policy, _ = ApprovalPolicy.objects.get_or_create(account=world.prod)
    for name, value in rule.items():
        setattr(policy, name, value)
    policy.save()


def _entry(access_request: AccessRequest, action: str) -> LogbookEntry:
    return LogbookEntry.objects.get(request_id=access_request.pk, action=action)


def _reload(access_request: AccessRequest) -> AccessRequest:
    return AccessRequest.objects.get(pk=access_request.pk)


# --- deny rules: revoked -----------------------------------------------------------------


def test_deny_admin_rights_revokes_an_active_sudo_request(world: World) -> None:
    access_request = active(world, admin_rights=True, ticket="CHG-1")

    _policy_saved(world, deny_admin_rights=True)

    access_request = _reload(access_request)
    assert access_request.status in (RequestStatus.COMPLETING, RequestStatus.COMPLETED)
    assert access_request.end_reason == EndReason.REVOKED
    revoked = _entry(access_request, "request.revoked")
    assert revoked.detail["via"] == "policy_changed"
    assert revoked.detail["rule"] == "deny_admin_rights"
    assert "does not allow administrator rights" in revoked.detail["why"]
    assert not Grant.objects.filter(request=access_request, status=GrantStatus.READY).exists()


def test_deny_without_ticket_revokes_a_provisioning_request_without_one(world: World) -> None:
    access_request = approved(world, ticket="")
    services.access_request_begin_provisioning(request_id=access_request.pk)
    assert _reload(access_request).status == RequestStatus.PROVISIONING

    _policy_saved(world, deny_without_ticket=True)

    access_request = _reload(access_request)
    assert access_request.end_reason == EndReason.REVOKED
    assert _entry(access_request, "request.revoked").detail["rule"] == "deny_without_ticket"


def test_a_new_deny_rule_rejects_an_approved_request_at_once(world: World) -> None:
    access_request = approved(world, admin_rights=True, ticket="CHG-1")

    _policy_saved(world, deny_admin_rights=True)

    access_request = _reload(access_request)
    assert access_request.status == RequestStatus.REJECTED
    assert _entry(access_request, "request.rejected").detail["via"] == "policy_changed"


def test_a_request_the_new_rule_allows_keeps_running(world: World) -> None:
    plain = active(world, admin_rights=False, ticket="CHG-1")
    before = actions(plain)

    _policy_saved(world, deny_admin_rights=True, deny_without_ticket=True)

    plain = _reload(plain)
    assert plain.status == RequestStatus.ACTIVE
    assert actions(plain) == before


def test_the_policy_of_another_account_leaves_the_request_alone(world: World) -> None:
    access_request = active(world, admin_rights=True, ticket="CHG-1")

    ApprovalPolicy.objects.create(account=world.staging, deny_admin_rights=True)

    assert _reload(access_request).status == RequestStatus.ACTIVE


# --- deny_over_duration: shortened -------------------------------------------------------


def test_a_lower_deny_over_duration_shortens_an_active_request(
    world: World, frozen: Any, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    access_request = active(world, duration=timedelta(hours=8), ticket="CHG-2")
    assert access_request.expires_at == T0 + timedelta(hours=8)
    grant_id = Grant.objects.get(request=access_request).pk
    frozen.move_to(T0 + timedelta(minutes=20), tick=False)

    with django_capture_on_commit_callbacks(execute=True):
        _policy_saved(world, deny_over_duration=timedelta(hours=1))

    access_request = _reload(access_request)
    assert access_request.status == RequestStatus.ACTIVE
    assert access_request.expires_at == T0 + timedelta(hours=1)
    assert access_request.total_duration == timedelta(hours=1)
    shortened = _entry(access_request, "request.shortened")
    assert shortened.detail["rule"] == "deny_over_duration"
    assert shortened.detail["via"] == "policy_changed"
    assert shortened.detail["expires_at_before"] == str(T0 + timedelta(hours=8))
    assert shortened.detail["expires_at"] == str(T0 + timedelta(hours=1))
    assert "at most 1 h per request" in shortened.detail["why"]
    # The host's account expiry moves with the end.
    assert ("sync_grant_expiry", grant_id) in queued


def test_an_extended_request_is_cut_to_the_new_limit_counting_its_extension(world: World, frozen: Any) -> None:
    access_request = active(world, duration=timedelta(hours=1), ticket="CHG-2")
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=3))

    _policy_saved(world, deny_over_duration=timedelta(hours=2))

    access_request = _reload(access_request)
    assert access_request.expires_at == T0 + timedelta(hours=2)
    assert (access_request.duration, access_request.extended_by) == (timedelta(hours=1), timedelta(hours=1))


def test_a_request_already_past_the_new_limit_ends_as_expiry_does(world: World, frozen: Any) -> None:
    access_request = active(world, duration=timedelta(hours=8), ticket="CHG-2")
    frozen.move_to(T0 + timedelta(hours=3), tick=False)

    _policy_saved(world, deny_over_duration=timedelta(hours=2))

    access_request = _reload(access_request)
    assert access_request.end_reason == EndReason.EXPIRED
    assert access_request.status in (RequestStatus.COMPLETING, RequestStatus.EXPIRED)
    assert access_request.expires_at == T0 + timedelta(hours=2)
    logged = actions(access_request)
    assert logged.index("request.shortened") < logged.index("request.expiring")


def test_a_higher_deny_over_duration_never_lengthens_a_request(world: World, frozen: Any) -> None:
    _policy_saved(world, deny_over_duration=timedelta(hours=2))
    access_request = active(world, duration=timedelta(hours=1), ticket="CHG-2")

    _policy_saved(world, deny_over_duration=timedelta(hours=6))

    access_request = _reload(access_request)
    assert access_request.expires_at == T0 + timedelta(hours=1)
    assert "request.shortened" not in actions(access_request)


def test_a_provisioning_request_gets_the_new_limit_once_it_starts(world: World, frozen: Any) -> None:
    access_request = approved(world, duration=timedelta(hours=8), ticket="CHG-2")
    grant_ids = services.access_request_begin_provisioning(request_id=access_request.pk)

    _policy_saved(world, deny_over_duration=timedelta(hours=1))

    shortened = _entry(access_request, "request.shortened")
    assert (shortened.detail["total_minutes_before"], shortened.detail["total_minutes"]) == (480, 60)
    for grant_id in grant_ids:
        services.grant_provision(grant_id=grant_id)
    access_request = _reload(access_request)
    assert access_request.status == RequestStatus.ACTIVE
    assert access_request.expires_at == T0 + timedelta(hours=1)


def test_a_limit_saved_while_the_create_script_runs_is_the_end_the_request_starts_with(
    world: World, frozen: Any, fleet: FakeFleet
) -> None:
    """The worker read the request before its Run Command; the policy's save during the script
    shortens it. Activation takes the length from the request's row as locked, not as read then."""
    access_request = approved(world, duration=timedelta(hours=8), ticket="CHG-2")
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)

    def script_runs(**kw: Any) -> CommandResult:
        _policy_saved(world, deny_over_duration=timedelta(hours=1))  # an admin, meanwhile
        return ok("cmd-1")

    fleet.will(script_runs)
    services.grant_provision(grant_id=grant_id)

    access_request = _reload(access_request)
    shortened = _entry(access_request, "request.shortened")
    assert (shortened.detail["total_minutes_before"], shortened.detail["total_minutes"]) == (480, 60)
    assert access_request.status == RequestStatus.ACTIVE
    assert access_request.total_duration == timedelta(hours=1)
    assert access_request.expires_at == T0 + timedelta(hours=1)
    assert _entry(access_request, "request.active").detail["expires_at"] == str(T0 + timedelta(hours=1))


# --- approvals at provisioning: back to pending ------------------------------------------


def test_more_approvals_required_sends_an_approved_request_back_to_pending(world: World) -> None:
    access_request = approved(world, ticket="CHG-3")

    _policy_saved(world, approvals_required=2)
    handed_out = services.access_request_begin_provisioning(request_id=access_request.pk)

    access_request = _reload(access_request)
    assert handed_out == []
    assert access_request.status == RequestStatus.PENDING
    assert access_request.decided_by_id is None and access_request.decided_at is None
    back = _entry(access_request, "request.back_to_pending")
    assert back.detail == {
        "rule": "approvals_required=2",
        "approvals": 1,
        "required": 2,
        "via": "provisioning",
        "why": "Acme Production now asks for 2 approvals; 1 stands.",
    }
    # The approval given still counts: a second approver's makes it approved again.
    assert RequestApproval.objects.filter(request_id=access_request.pk, approver=world.approver).exists()
    second = make_user("frank")
    make_membership(second, world.prod, "admin", can_approve=True)
    access_request = services.access_request_approve(access_request=access_request, approver=second)
    assert access_request.status == RequestStatus.APPROVED
    assert activate(access_request).status == RequestStatus.ACTIVE


def test_enough_approvals_for_the_raised_requirement_start_provisioning(world: World) -> None:
    _policy_saved(world, approvals_required=2)
    access_request = create(world, ticket="CHG-3")
    second = make_user("frank")
    make_membership(second, world.prod, "admin", can_approve=True)
    services.access_request_approve(access_request=access_request, approver=world.approver)
    services.access_request_approve(access_request=access_request, approver=second)

    assert activate(access_request).status == RequestStatus.ACTIVE
    assert "request.back_to_pending" not in actions(access_request)


def test_auto_approval_switched_off_sends_an_automatically_approved_request_back_to_pending(world: World) -> None:
    _policy_saved(world, auto_approve=True, auto_approve_requires_ticket=False)
    world.requester.identity_store = User.IdentityStore.INTERNAL
    world.requester.save(update_fields=["identity_store"])
    access_request = create(world, ticket="CHG-4", duration=timedelta(hours=1))
    assert access_request.status == RequestStatus.APPROVED and access_request.approved_automatically

    _policy_saved(world, auto_approve=False)
    handed_out = services.access_request_begin_provisioning(request_id=access_request.pk)

    access_request = _reload(access_request)
    assert handed_out == []
    assert access_request.status == RequestStatus.PENDING
    back = _entry(access_request, "request.back_to_pending")
    assert back.detail["rule"] == "approvals_required=1"
    assert back.detail["approvals"] == 0
    assert not RequestApproval.objects.filter(request_id=access_request.pk).exists()
    # An approver decides it now.
    access_request = services.access_request_approve(access_request=access_request, approver=world.approver)
    assert activate(access_request).status == RequestStatus.ACTIVE


def test_an_automatic_approval_the_rule_still_gives_starts_provisioning(world: World) -> None:
    _policy_saved(world, auto_approve=True, auto_approve_requires_ticket=False)
    world.requester.identity_store = User.IdentityStore.INTERNAL
    world.requester.save(update_fields=["identity_store"])
    access_request = create(world, ticket="CHG-4", duration=timedelta(hours=1))

    _policy_saved(world, approvals_required=3)

    assert activate(access_request).status == RequestStatus.ACTIVE
