"""An admin's save of an account's approval policy racing what reads that policy (a provisioning
start, an approval, an extension), each on its own PostgreSQL connection, as two processes would.

A policy holds for a request's whole length. The save weighs the account's live requests
(``access_requests_policy_changed``); a reader that asked the policy before the save committed, and
acted after the save had read its requests, would slip between the two: a request provisioned,
approved or extended under a rule that refuses it. Both take the account's row first (the lock
order in ``requests_app.services.lifecycle``), so one waits for the other and the outcome is as if
they had run one after the other. The race helpers are ``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import ApprovalPolicy
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, RequestStatus
from requests_app.services.lifecycle import extend, policy
from requests_app.services.provisioning import create
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.conftest import World


def _pending(world: World, **fields: object) -> AccessRequest:
    """Alice's request on prod, without a ticket."""
    return services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy", **fields
    )


def _approved(world: World) -> AccessRequest:
    access_request = _pending(world)
    services.access_request_approve(access_request=access_request, approver=world.approver)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED
    return access_request


def _active_for_four_hours(world: World) -> AccessRequest:
    access_request = _pending(world, duration=timedelta(hours=4))
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=4)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    access_request.refresh_from_db()
    return access_request


def _saving(world: World, **rules: object) -> Side:
    """The site admin's save of prod's policy, as the admin's inline saves it (post_save: the recheck)."""

    def save() -> None:
        with transaction.atomic():
            ApprovalPolicy.objects.create(account=world.prod, **rules)

    return Side(save)


def _saved_and_held(world: World, monkeypatch: pytest.MonkeyPatch, **rules: object) -> tuple[Side, Hold]:
    """The save held after its recheck of the account's live requests, before its commit."""
    hold = Hold(services.access_requests_policy_changed, after=True)
    monkeypatch.setattr(services, "access_requests_policy_changed", hold)
    admin = _saving(world, **rules)
    admin.start()
    hold.wait(admin)
    return admin, hold


# --- provisioning start -----------------------------------------------------------------------


def test_provisioning_starting_while_a_deny_rule_is_saved_waits_and_the_request_is_rejected(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = _approved(world)
    # The save, held once it has read the account's live requests (this one approved).
    hold = Hold(policy.access_request_reject_if_policy_denies)
    monkeypatch.setattr(policy, "access_request_reject_if_policy_denies", hold)
    admin = _saving(world, deny_without_ticket=True)
    admin.start()
    hold.wait(admin)

    worker = Side(lambda: services.access_request_begin_provisioning(request_id=access_request.pk))
    worker.start()
    wait_for_a_lock_waiter(unless_done=worker)  # the provisioning start waits for the save
    hold.release.set()

    admin.finish()
    grants = worker.finish()
    access_request.refresh_from_db()
    # The save came first: rejected under the rule, as it found it; nothing handed out after.
    assert (access_request.status, grants) == (RequestStatus.REJECTED, []), access_request.status
    rejected = LogbookEntry.objects.get(action="request.rejected", request_id=access_request.pk)
    assert (rejected.detail["via"], rejected.detail["rule"]) == ("policy_changed", "deny_without_ticket")
    assert not LogbookEntry.objects.filter(action="request.provisioning").exists()
    assert logbook_verify().intact


def test_a_deny_rule_saved_while_provisioning_starts_waits_and_revokes_the_request(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = _approved(world)
    # The provisioning start, held after its move to provisioning, before its commit.
    hold = Hold(create.logbook_append)
    monkeypatch.setattr(create, "logbook_append", hold)
    worker = Side(lambda: services.access_request_begin_provisioning(request_id=access_request.pk))
    worker.start()
    hold.wait(worker)

    admin = _saving(world, deny_without_ticket=True)
    admin.start()
    wait_for_a_lock_waiter()  # the save waits for the provisioning start
    hold.release.set()

    worker.finish()
    admin.finish()
    access_request.refresh_from_db()
    # Provisioning came first: the save found it provisioning, and revoked it (its grant, not yet
    # attempted, removed at once: the request is over).
    assert (access_request.status, access_request.end_reason) == (RequestStatus.COMPLETED, EndReason.REVOKED)
    assert Grant.objects.get(request=access_request).status == GrantStatus.REMOVED
    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=access_request.pk)
    assert (revoked.detail["via"], revoked.detail["rule"]) == ("policy_changed", "deny_without_ticket")
    assert LogbookEntry.objects.get(action="request.provisioning").pk < revoked.pk
    assert logbook_verify().intact


# --- approval ---------------------------------------------------------------------------------


def test_an_approval_while_a_deny_rule_is_saved_waits_and_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = _pending(world)
    admin, hold = _saved_and_held(world, monkeypatch, deny_without_ticket=True)

    approving = Side(lambda: services.access_request_approve(access_request=access_request, approver=world.approver))
    approving.start()
    wait_for_a_lock_waiter(unless_done=approving)  # the approval waits for the save
    hold.release.set()

    admin.finish()
    approving.join(30)
    assert isinstance(approving.error, RequestRuleError), approving.error or "approved"
    # The save came first: its rule refuses the approval; the request still waits, and starts nothing.
    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []
    access_request.refresh_from_db()
    assert (access_request.status, access_request.decided_by) == (RequestStatus.PENDING, None)
    assert not LogbookEntry.objects.filter(action="request.approved").exists()
    assert LogbookEntry.objects.filter(action="request.approve_denied", request_id=access_request.pk).exists()
    assert logbook_verify().intact


def test_an_approval_while_more_approvals_are_asked_for_waits_and_counts_as_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = _pending(world)
    admin, hold = _saved_and_held(world, monkeypatch, approvals_required=2)

    approving = Side(lambda: services.access_request_approve(access_request=access_request, approver=world.approver))
    approving.start()
    wait_for_a_lock_waiter(unless_done=approving)
    hold.release.set()

    admin.finish()
    approving.finish()
    # The save came first: two approvals asked for, one given; the request still waits for the second.
    access_request.refresh_from_db()
    assert (access_request.status, access_request.decided_by) == (RequestStatus.PENDING, None)
    recorded = LogbookEntry.objects.get(action="request.approval_recorded", request_id=access_request.pk)
    assert (recorded.detail["approvals"], recorded.detail["required"]) == (1, 2)
    assert not LogbookEntry.objects.filter(action="request.approved").exists()
    assert logbook_verify().intact


# --- extension --------------------------------------------------------------------------------


def test_an_extension_checked_before_a_lower_limit_is_saved_is_then_shortened(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = _active_for_four_hours(world)
    # The extension, held after its check under the locks (no policy yet), before its UPDATE; the first
    # check, a quick refusal outside any transaction, passes through.
    original = extend.access_request_extend_check
    hold = Hold(original, after=True)
    calls: list[None] = []

    def checked_twice(*args: Any, **kwargs: Any) -> Any:
        calls.append(None)
        return (hold if len(calls) == 2 else original)(*args, **kwargs)

    monkeypatch.setattr(extend, "access_request_extend_check", checked_twice)
    extending = Side(
        lambda: services.access_request_extend(
            access_request=access_request, actor=world.requester, by=timedelta(hours=1)
        )
    )
    extending.start()
    hold.wait(extending)

    admin = _saving(world, deny_over_duration=timedelta(hours=2))
    admin.start()
    wait_for_a_lock_waiter(unless_done=admin)  # the save waits for the extension
    hold.release.set()

    extending.finish()
    admin.finish()
    access_request.refresh_from_db()
    # The extension came first (5 hours), then the save cut the request to its 2.
    assert access_request.total_duration == timedelta(hours=2)
    extended = LogbookEntry.objects.get(action="request.extended", request_id=access_request.pk)
    shortened = LogbookEntry.objects.get(action="request.shortened", request_id=access_request.pk)
    assert extended.pk < shortened.pk and shortened.detail["total_minutes_before"] == 5 * 60
    assert logbook_verify().intact


def test_an_extension_asked_before_a_lower_limit_was_saved_is_refused_by_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = _active_for_four_hours(world)
    # The extension has asked the policy once (none yet: 5 hours would do), outside any transaction,
    # and holds no lock yet.
    hold = Hold(extend.access_request_extend_check, after=True)
    monkeypatch.setattr(extend, "access_request_extend_check", hold)
    extending = Side(
        lambda: services.access_request_extend(
            access_request=access_request, actor=world.requester, by=timedelta(hours=1)
        )
    )
    extending.start()
    hold.wait(extending)

    admin = _saving(world, deny_over_duration=timedelta(hours=2))
    admin.start()
    admin.finish()  # committed meanwhile, waiting for nothing: the request is cut to 2 hours
    monkeypatch.setattr(extend, "access_request_extend_check", hold.original)  # asked again, not held
    hold.release.set()

    extending.join(30)
    assert not extending.is_alive()
    # Asked again under the locks, of the request as it is now (2 hours, and a limit of 2): refused.
    assert isinstance(extending.error, RequestRuleError), repr(extending.error)
    assert "this request has 2 h, so it can no longer be extended" in str(extending.error), str(extending.error)
    access_request.refresh_from_db()
    assert access_request.total_duration == timedelta(hours=2)
    assert access_request.expires_at == access_request.activated_at + timedelta(hours=2)
    assert not LogbookEntry.objects.filter(action="request.extended").exists()
    assert LogbookEntry.objects.filter(action="request.extend_denied", request_id=access_request.pk).count() == 1
    decided = LogbookEntry.objects.get(action="approval_policy.decided", request_id=access_request.pk)
    assert decided.detail["total_minutes"] == 3 * 60  # weighed against the 2 hours it has now, not 4
    assert LogbookEntry.objects.filter(action="request.shortened", request_id=access_request.pk).count() == 1
    assert logbook_verify().intact


def test_an_extension_while_a_lower_limit_is_saved_waits_and_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = _active_for_four_hours(world)
    admin, hold = _saved_and_held(world, monkeypatch, deny_over_duration=timedelta(hours=2))

    extending = Side(
        lambda: services.access_request_extend(
            access_request=access_request, actor=world.requester, by=timedelta(hours=1)
        )
    )
    extending.start()
    wait_for_a_lock_waiter(unless_done=extending)  # the extension waits for the save
    hold.release.set()

    admin.finish()
    extending.join(30)
    assert isinstance(extending.error, RequestRuleError), extending.error or "extended"
    access_request.refresh_from_db()
    # The save came first: the request was cut to 2 hours, and an hour more breaks the limit.
    assert (access_request.total_duration, access_request.extended_by) == (timedelta(hours=2), timedelta(0))
    assert not LogbookEntry.objects.filter(action="request.extended").exists()
    assert logbook_verify().intact
