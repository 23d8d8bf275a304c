"""Per-account approval policies: deny rules, automatic approval, and N approvals of M.

An account without an ``ApprovalPolicy`` row behaves as Passport always has: one approval
by someone other than the requester, no automatic rules. The lifecycle services ask here and
write each decision to the Logbook with the rule that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction

from accounts.models import ApprovalPolicy, AwsAccount, RequestApproval, User

DENY = "deny"
AUTO_APPROVE = "auto_approve"
NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True)
class PolicyDecision:
    outcome: str  # DENY | AUTO_APPROVE | NEEDS_APPROVAL
    rule: str  # the rule that decided, as written to the Logbook
    messages: list[str] = field(default_factory=list)
    # False when the account has no policy of its own (nothing to record).
    configured: bool = True


def approval_policy_for(account: AwsAccount) -> ApprovalPolicy | None:
    return ApprovalPolicy.objects.filter(account=account).first()


def _hours(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def approval_policy_evaluate(
    *, account: AwsAccount, requester: User, ticket: str, duration: timedelta, admin_rights: bool
) -> PolicyDecision:
    """What the account's policy says about a new request: refused, approved at once, or to approvers.

    ``admin_rights`` means the same on every platform (sudo on Linux, Administrators or the
    domain's admin group on Windows), so each rule weighs it the same whatever the instances are.
    """
    policy = approval_policy_for(account)
    if policy is None:
        return PolicyDecision(NEEDS_APPROVAL, "default: 1 approval", configured=False)

    denials: list[tuple[str, str]] = []
    if policy.deny_without_ticket and not ticket:
        denials.append(("deny_without_ticket", f"{account.name} requires a ticket reference for every request."))
    if policy.deny_admin_rights and admin_rights:
        denials.append(
            (
                "deny_admin_rights",
                f"{account.name} does not allow administrator rights (sudo, Administrators) through Passport.",
            )
        )
    if policy.deny_over_duration is not None and duration > policy.deny_over_duration:
        denials.append(
            ("deny_over_duration", f"{account.name} allows at most {_hours(policy.deny_over_duration)} per request.")
        )
    if denials:
        return PolicyDecision(DENY, ", ".join(rule for rule, _ in denials), [message for _, message in denials])

    if policy.auto_approve:
        conditions = []
        holds = True
        if policy.auto_approve_identity_store:
            conditions.append(f"identity_store={policy.auto_approve_identity_store}")
            holds &= requester.identity_store == policy.auto_approve_identity_store
        if policy.auto_approve_requires_ticket:
            conditions.append("ticket named")
            holds &= bool(ticket)
        conditions.append(f"duration<={_hours(policy.auto_approve_max_duration)}")
        holds &= duration <= policy.auto_approve_max_duration
        if not policy.auto_approve_admin_rights:
            conditions.append("no administrator rights")
            holds &= not admin_rights
        if holds:
            return PolicyDecision(AUTO_APPROVE, "auto_approve: " + " and ".join(conditions))
    return PolicyDecision(NEEDS_APPROVAL, f"approvals_required={policy.approvals_required}")


def approvals_required(account: AwsAccount) -> int:
    policy = approval_policy_for(account)
    return policy.approvals_required if policy else 1


def approval_record(*, request_id: int, approver: User, note: str = "") -> tuple[int, bool]:
    """Record one approver's yes. Returns the number of distinct approvals and whether this one is new."""
    created = True
    try:
        with transaction.atomic():
            RequestApproval.objects.create(request_id=request_id, approver=approver, note=note[:256])
    except IntegrityError:
        created = False  # the same approver again: counted once
    return RequestApproval.objects.filter(request_id=request_id).count(), created
