"""An account's approval policy asked again of requests already past approval.

A policy holds for a request's whole length. Approval, provisioning start and extension ask it
themselves, holding the account's row until they commit (``approval_policy_hold``); this module
covers the rest:

- when an admin saves the policy (``access_requests_policy_changed``, in the transaction of the
  save, the account's row locked first: those under way are waited for, and what they did is
  weighed), each live request of the account is asked again: one a deny rule now refuses is revoked
  (active or provisioning) or rejected (approved, nothing created yet); one longer than
  ``deny_over_duration`` now allows is shortened to its activation plus the limit (never
  lengthened), and ends at once as expiry does if that is already past;
- when provisioning starts (``access_request_reopen_if_approvals_short``), a request approved with
  fewer approvals than the policy now asks for, by someone who no longer approves there, or by
  an automatic rule that no longer approves it, goes back to pending, for approvers to decide as
  a new request would be.

A deleted policy only loosens (no policy: one approval, no rules), so its deletion asks nothing.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.approval_policies import (
    AUTO_APPROVE,
    DENY,
    approval_policy_evaluate,
    approval_policy_lock_for_save,
    approval_record,
    approvals_required,
)
from accounts.models import ApprovalPolicy
from audit.services import logbook_append, logbook_batch
from core.dispatch import task_send_on_commit
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, RequestStatus
from requests_app.notifications import Kind, notification_enqueue
from requests_app.selectors import access_request_approvals_short, access_request_policy_denials
from requests_app.services.lifecycle.common import _instance_ids, _transition
from requests_app.services.lifecycle.ending import _begin_ending, access_request_reject_if_policy_denies

VIA_POLICY_CHANGED = "policy_changed"
OVER_DURATION = "deny_over_duration"


def _minutes(value: timedelta) -> int:
    return int(value.total_seconds() // 60)


def access_requests_policy_changed(*, account_id: int) -> list[int]:
    """Ask the account's policy, as just saved, of each of its live requests; the ids of those it
    revoked, rejected or shortened. In the caller's transaction (the save's): if that one rolls
    back, nothing changes. The Logbook entries are appended at its end (``logbook_batch``), after
    the request rows, as the lock order of this package asks."""
    changed: list[int] = []
    with transaction.atomic(), logbook_batch():
        # The account's row first: an approval, a provisioning start or an extension that read the
        # policy before this save holds it (``approval_policy_hold``) and is waited for, so what it
        # did is weighed below; one that comes later waits for this commit and reads this policy.
        approval_policy_lock_for_save(account_id=account_id)
        policy = ApprovalPolicy.objects.select_related("account").filter(account_id=account_id).first()
        if policy is None:
            return []
        # Each row locked and read as it is now, in pk order: the status weighed is the one acted on.
        live = (
            AccessRequest.objects.select_for_update(no_key=True, of=("self",))
            .select_related("requester", "account")
            .filter(
                account_id=account_id,
                status__in=[RequestStatus.APPROVED, RequestStatus.PROVISIONING, RequestStatus.ACTIVE],
            )
            .order_by("pk")
        )
        for access_request in live:
            if _recheck(access_request, policy):
                changed.append(access_request.pk)
    return changed


def _recheck(access_request: AccessRequest, policy: ApprovalPolicy) -> bool:
    """One live request, its row locked: rejected if still approved, revoked once provisioning or
    active (what a provisioning start may have made is removed), or shortened."""
    if access_request.status == RequestStatus.APPROVED:
        # Nothing on an instance yet: rejected, as provisioning start would.
        return access_request_reject_if_policy_denies(access_request=access_request, via=VIA_POLICY_CHANGED)
    denials = access_request_policy_denials(access_request=access_request, policy=policy)
    standing = [(rule, message) for rule, message in denials if rule != OVER_DURATION]
    if standing:
        return _revoke(access_request, standing)
    over = [message for rule, message in denials if rule == OVER_DURATION]
    if over and policy.deny_over_duration is not None:
        return _shorten(access_request, limit=policy.deny_over_duration, why=over[0])
    return False


def _revoke(access_request: AccessRequest, denials: list[tuple[str, str]]) -> bool:
    """End a provisioning or active request a deny rule now refuses, as the loss of the Admin role
    does (``access_request_revoke_if_not_admin``): ``revoked``, its sessions closed, its users removed."""
    ended = _begin_ending(
        access_request,
        actor=None,
        end_reason=EndReason.REVOKED,
        action="request.revoked",
        detail={
            "why": " ".join(message for _, message in denials),
            "rule": ", ".join(rule for rule, _ in denials),
            "via": VIA_POLICY_CHANGED,
        },
    )
    if ended:
        notification_enqueue(kind=Kind.REVOKED, request_id=access_request.pk)
    return ended


def _shorten(access_request: AccessRequest, *, limit: timedelta, why: str) -> bool:
    """Cut the request's total length to ``limit`` (what it asked first, then its extensions), on
    the row locked and as read, so an extension saved meanwhile is weighed, not overwritten.

    An active request ends at its activation plus the limit; if that is past, it ends now as
    expiry does. A provisioning request's clock has not started: it gets the limit when it does.
    The hosts' account expiry follows the end (``provisioning.expiry``)."""
    locked = (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("account")
        .filter(pk=access_request.pk, status__in=[RequestStatus.PROVISIONING, RequestStatus.ACTIVE])
        .first()
    )
    if locked is None or locked.total_duration <= limit:
        return False
    duration = min(locked.duration, limit)
    extended_by = limit - duration
    before_total, before_end = locked.total_duration, locked.expires_at
    end = locked.activated_at + limit if locked.activated_at is not None else None
    if not _transition(
        locked,
        from_statuses=[locked.status],
        duration=duration,
        extended_by=extended_by,
        expires_at=end,
    ):
        return False
    detail: dict[str, object] = {
        "rule": OVER_DURATION,
        "why": why,
        "via": VIA_POLICY_CHANGED,
        "total_minutes_before": _minutes(before_total),
        "total_minutes": _minutes(limit),
    }
    if end is not None:
        detail.update(expires_at_before=before_end, expires_at=end)
    logbook_append(
        action="request.shortened",
        actor=None,
        account=locked.account,
        request_id=locked.pk,
        instance_ids=_instance_ids(locked),
        detail=detail,
    )
    if end is not None and end <= timezone.now():
        _begin_ending(locked, actor=None, end_reason=EndReason.EXPIRED, action="request.expiring")
    elif end is not None:
        # Each host's account expires at the request's end, a second lock should removal not run:
        # moved with it, as an extension moves it (``provisioning.expiry``; a grant still being
        # created is written with the new end, or moved once it is ready).
        ready = Grant.objects.filter(request_id=locked.pk, status=GrantStatus.READY).values_list("pk", flat=True)
        for grant_id in ready:
            task_send_on_commit("sync_grant_expiry", grant_id)
    return True


def access_request_reopen_if_approvals_short(*, access_request: AccessRequest, via: str) -> bool:
    """Put an approved request back to pending when its approval no longer meets the account's
    policy: fewer approvals stand (``approvals_standing``) than ``approvals_required`` now asks
    (under one asked for, the decider's own approval no longer stands: they lost approving there,
    their membership, or their Passport account, since, or are now the requester in person), or it
    was approved automatically and the rule no longer approves it. Returns whether it did. The
    rule for approvals people gave is ``selectors.access_request_approvals_short``, which refuses
    an active request more time too.

    Back to pending rather than rejected: the request itself is still allowed (the deny rules were
    asked first), only its decision falls short, and that is what pending waits for. The approvals
    given stay and count (a person's approval under one required is recorded as one of several),
    so only the ones missing are asked for; the approvers are asked again and the requester told
    by mail (once for each time it goes back). Nothing was handed out yet.
    """
    with transaction.atomic():
        locked = (
            AccessRequest.objects.select_for_update(of=("self",))
            .select_related("account", "requester", "decided_by")
            .filter(pk=access_request.pk, status=RequestStatus.APPROVED)
            .first()
        )
        if locked is None:
            return False
        account = locked.account
        decision = approval_policy_evaluate(
            account=account,
            requester=locked.requester,
            ticket=locked.ticket,
            duration=locked.total_duration,
            admin_rights=locked.admin_rights,
        )
        required = approvals_required(account)
        if locked.decided_by is None:
            if decision.outcome in (AUTO_APPROVE, DENY):
                return False  # still approved so (a deny rule is the rejection's to act on)
            approvals, rule = 0, decision.rule
            why = f"{account.name} no longer approves it automatically; it needs {_approvals(required)}."
        else:
            if required > 1:
                # The decider's approval is kept as one of the several asked for now, to count
                # once the request is pending again (it stands, or is weighed as not standing).
                approval_record(
                    request_id=locked.pk, account=account, approver=locked.decided_by, note=locked.decision_note
                )
            short = access_request_approvals_short(access_request=locked, required=required, lock=True)
            if short is None:
                return False
            approvals, rule, why = short.approvals, short.rule, short.why
        if not _transition(
            locked,
            from_statuses=[RequestStatus.APPROVED],
            status=RequestStatus.PENDING,
            decided_by=None,
            decided_at=None,
            decision_note="",
        ):
            return False
        logbook_append(
            action="request.back_to_pending",
            actor=None,
            account=account,
            request_id=locked.pk,
            instance_ids=_instance_ids(locked),
            detail={
                "rule": rule,
                "approvals": approvals,
                "required": required,
                "via": via,
                "why": why,
            },
        )
        # The approvers are asked again, the requester told it waits again: each a mail of its own
        # for this event (its receipt keyed to this Logbook entry), not blocked by the first asking.
        notification_enqueue(kind=Kind.AWAITING_APPROVAL, request_id=locked.pk)
        notification_enqueue(kind=Kind.BACK_TO_PENDING, request_id=locked.pk)
    access_request.refresh_from_db()
    return True


def _approvals(count: int) -> str:
    return f"{count} approval" if count == 1 else f"{count} approvals"
