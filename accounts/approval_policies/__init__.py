"""Per-account approval policies: deny rules, automatic approval, and N approvals of M.

An account without an ``ApprovalPolicy`` row behaves as Passport always has: one approval
by someone other than the requester (under any of their users: ``permissions.same_person``),
no automatic rules. The lifecycle services ask here and write each decision to the Logbook
with the rule that made it. Whether the approvals given a request count now, and recording one,
is ``standing``'s (its names are exported here too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from django.db import connection
from psycopg import sql

from accounts.approval_policies.standing import (
    ApprovalStanding,
    approval_of_person,
    approval_record,
    approvals_counted,
    approvals_standing,
    approvals_weighed,
    decider_why_not,
    decision_standing_why_not,
)
from accounts.models import ApprovalPolicy, AwsAccount, User

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


def approval_policy_hold(*, account_id: int) -> None:
    """Keep the account's approval policy as committed now until this transaction ends: its account
    row FOR SHARE, taken before the policy is read. A save of the policy takes that row FOR NO KEY
    UPDATE before it asks the policy of the account's requests (``approval_policy_lock_for_save``),
    so it waits for an approval, a provisioning start or an extension that holds this, and they wait
    for a save not yet committed, then read what it saved. First in the lock order of
    ``requests_app.services.lifecycle``. A no-op on SQLite (the demo: one writer at a time)."""
    if connection.vendor != "postgresql":
        return
    statement = sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR SHARE").format(sql.Identifier(AwsAccount._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(statement, [account_id])


def approval_policy_lock_for_save(*, account_id: int) -> None:
    """In the transaction that saves the account's approval policy, before it weighs the account's
    requests: its account row FOR NO KEY UPDATE, which waits for the holders of ``approval_policy_hold``
    (the admin's save of the account page holds it already, by its UPDATE of the row)."""
    list(AwsAccount.objects.select_for_update(no_key=True).filter(pk=account_id).values_list("pk", flat=True))


def approval_policies_for(account_pks: Iterable[int]) -> dict[int, ApprovalPolicy]:
    """``approval_policy_for`` of many accounts in one query, by account pk (an account without one is absent)."""
    pks = set(account_pks)
    return {policy.account_id: policy for policy in ApprovalPolicy.objects.filter(account_id__in=pks)} if pks else {}


def _hours(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def _standing_denials(
    policy: ApprovalPolicy, account: AwsAccount, *, ticket: str, admin_rights: bool
) -> list[tuple[str, str]]:
    """The deny rules a request breaks whatever its length: (rule, message) pairs."""
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
    return denials


def _denials(
    policy: ApprovalPolicy, account: AwsAccount, *, ticket: str, admin_rights: bool, duration: timedelta
) -> list[tuple[str, str]]:
    """Every deny rule a request of this length breaks: (rule, message) pairs."""
    denials = _standing_denials(policy, account, ticket=ticket, admin_rights=admin_rights)
    if policy.deny_over_duration is not None and duration > policy.deny_over_duration:
        denials.append(
            ("deny_over_duration", f"{account.name} allows at most {_hours(policy.deny_over_duration)} per request.")
        )
    return denials


def approval_policy_denials(
    *,
    account: AwsAccount,
    ticket: str,
    admin_rights: bool,
    duration: timedelta,
    policy: ApprovalPolicy | Literal["read"] | None = "read",
) -> list[tuple[str, str]]:
    """The deny rules of the account's policy, as it is now, that a request like this breaks:
    (rule, message) pairs, as a new request is refused by them; empty when it breaks none.

    A policy holds for a request's whole length, so a rule an admin sets while a request waits
    is asked again at its approval (``requests_app.selectors.access_request_approve_check``),
    when its provisioning starts, and of every live request when the policy is saved
    (``requests_app.services.lifecycle.policy``). ``policy`` as for ``approval_policy_extension_limits``."""
    if isinstance(policy, str):  # "read"
        policy = approval_policy_for(account)
    if policy is None:
        return []
    return _denials(policy, account, ticket=ticket, admin_rights=admin_rights, duration=duration)


def _auto_approval(
    policy: ApprovalPolicy, *, requester: User, ticket: str, admin_rights: bool, duration: timedelta | None
) -> tuple[str, bool]:
    """The automatic-approval rule as written to the Logbook, and whether the request meets it.

    ``duration`` None leaves the length out of the test (an extension weighs it on its own)."""
    conditions = []
    holds = True
    if policy.auto_approve_identity_store:
        conditions.append(f"identity_store={policy.auto_approve_identity_store}")
        holds &= requester.identity_store == policy.auto_approve_identity_store
    if policy.auto_approve_requires_ticket:
        conditions.append("ticket named")
        holds &= bool(ticket)
    conditions.append(f"duration<={_hours(policy.auto_approve_max_duration)}")
    if duration is not None:
        holds &= duration <= policy.auto_approve_max_duration
    if not policy.auto_approve_admin_rights:
        conditions.append("no administrator rights")
        holds &= not admin_rights
    return "auto_approve: " + " and ".join(conditions), holds


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

    denials = _denials(policy, account, ticket=ticket, admin_rights=admin_rights, duration=duration)
    if denials:
        return PolicyDecision(DENY, ", ".join(rule for rule, _ in denials), [message for _, message in denials])

    if policy.auto_approve:
        rule, holds = _auto_approval(
            policy, requester=requester, ticket=ticket, admin_rights=admin_rights, duration=duration
        )
        if holds:
            return PolicyDecision(AUTO_APPROVE, rule)
    return PolicyDecision(NEEDS_APPROVAL, f"approvals_required={policy.approvals_required}")


@dataclass(frozen=True)
class ExtensionLimit:
    """How long in all an active request may last before the account's policy stands in the way.

    An extension past ``most`` is refused: for ``DENY`` the policy allows no more at all; for
    ``NEEDS_APPROVAL`` more would need an approver's decision, which an extension does not get
    (the person asks in a new request). Within ``most`` of an ``auto_approve`` limit, the rule
    approves the extra time, and the Logbook says so.
    """

    most: timedelta  # the longest total allowed; zero: no extension at all
    outcome: str  # DENY | NEEDS_APPROVAL: what going past it is
    rule: str  # as written to the Logbook
    reason: str  # why, as a clause the refusal completes (no full stop)


def approval_policy_extension_limits(
    *,
    account: AwsAccount,
    requester: User,
    ticket: str,
    admin_rights: bool,
    approved_automatically: bool,
    policy: ApprovalPolicy | Literal["read"] | None = "read",
) -> list[ExtensionLimit]:
    """What the account's policy, as it is now, says about a longer total for an active request.

    The policy governs the request's whole length, not only what it first asked for, so an
    extension cannot carry it past what the policy lets a new request have: past
    ``deny_over_duration`` (or once another deny rule now refuses it), or, for a request no person
    approved, past what automatic approval covers. A request an approver decided may be
    extended within the deny rules (and the 12 hours), as it always could.

    The tightest limit first (a deny rule before an automatic one of the same length); empty:
    the policy sets none. ``policy``: the account's, when the caller has read it already
    (``approval_policies_for``; None: it has none); by default it is read now.
    """
    if isinstance(policy, str):  # "read"
        policy = approval_policy_for(account)
    limits: list[ExtensionLimit] = []
    if policy is not None:
        denials = _standing_denials(policy, account, ticket=ticket, admin_rights=admin_rights)
        if denials:
            limits.append(
                ExtensionLimit(
                    timedelta(0),
                    DENY,
                    ", ".join(rule for rule, _ in denials),
                    "; ".join(message.removesuffix(".") for _, message in denials),
                )
            )
        if policy.deny_over_duration is not None:
            limits.append(
                ExtensionLimit(
                    policy.deny_over_duration,
                    DENY,
                    "deny_over_duration",
                    f"{account.name} allows at most {_hours(policy.deny_over_duration)} per request, "
                    "extensions included",
                )
            )
    if approved_automatically:
        if policy is not None and policy.auto_approve:
            rule, holds = _auto_approval(
                policy, requester=requester, ticket=ticket, admin_rights=admin_rights, duration=None
            )
        else:
            rule, holds = ("auto_approve: off" if policy is not None else "default: 1 approval"), False
        if holds:
            assert policy is not None
            limits.append(
                ExtensionLimit(
                    policy.auto_approve_max_duration,
                    NEEDS_APPROVAL,
                    rule,
                    f"{account.name} approves at most {_hours(policy.auto_approve_max_duration)} per request that way",
                )
            )
        else:
            limits.append(
                ExtensionLimit(timedelta(0), NEEDS_APPROVAL, rule, f"{account.name} no longer approves it that way")
            )
    return sorted(limits, key=lambda limit: (limit.most, limit.outcome != DENY))


def approvals_required(account: AwsAccount) -> int:
    return approvals_asked(approval_policy_for(account))


def approvals_asked(policy: ApprovalPolicy | None) -> int:
    """How many approvals an account with this policy asks for (read already; None: it has none, one)."""
    return policy.approvals_required if policy is not None else 1


__all__ = [
    "AUTO_APPROVE",
    "DENY",
    "NEEDS_APPROVAL",
    "ApprovalStanding",
    "ExtensionLimit",
    "PolicyDecision",
    "approval_of_person",
    "approval_policies_for",
    "approval_policy_denials",
    "approval_policy_evaluate",
    "approval_policy_extension_limits",
    "approval_policy_for",
    "approval_policy_hold",
    "approval_policy_lock_for_save",
    "approval_record",
    "approvals_asked",
    "approvals_counted",
    "approvals_required",
    "approvals_standing",
    "approvals_weighed",
    "decider_why_not",
    "decision_standing_why_not",
]
