"""Whether the approvals people gave a request still meet the account's policy: the one rule that
sends an approved request back to pending when its provisioning starts
(``services.lifecycle.policy.access_request_reopen_if_approvals_short``) and refuses an active one
more time (``selectors.access_request_extend_check``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from accounts import permissions
from accounts.approval_policies import (
    ApprovalStanding,
    approvals_asked,
    approvals_required,
    approvals_standing,
    approvals_weighed,
    decider_why_not,
    decision_standing_why_not,
)
from accounts.models import ApprovalPolicy, Membership, RequestApproval
from requests_app.models import AccessRequest


@dataclass(frozen=True)
class ApprovalsShort:
    """A request people approved whose approvals no longer meet the account's policy."""

    approvals: int  # how many stand now
    required: int  # how many the policy asks for now
    rule: str  # as written to the Logbook
    why: str  # whole sentences: which approval no longer counts, and what that leaves


def approvals_short(
    access_request: AccessRequest, *, required: int, decider_why_not: str, standing: Sequence[ApprovalStanding]
) -> ApprovalsShort | None:
    """The rule, of what was read already: ``standing`` (``approvals_standing``), ``decider_why_not``
    (why the decision of ``decided_by`` alone would not count now, ``decision_standing_why_not``).

    Under one approval asked for, the decider's own must stand, or another recorded one (given while
    the policy asked for more) that still counts. Of several, those that stand are counted, the
    decider's decision among them when it was not recorded apart (given when one was asked for)."""
    account = access_request.account
    counted = sum(1 for one in standing if one.counts)
    rule = f"approvals_required={required}"
    if required <= 1:
        if not decider_why_not or counted >= required:
            return None
        return ApprovalsShort(
            0, required, rule, f"{decider_why_not} {account.name} asks for {_approvals(required)}; none stands."
        )
    decider = access_request.decided_by
    recorded = decider is not None and any(permissions.same_person(one.approval.approver, decider) for one in standing)
    if decider is not None and not recorded and not decider_why_not:
        counted += 1
    if counted >= required:
        return None
    lost = "".join(f"{one.why_not} " for one in standing if not one.counts)
    return ApprovalsShort(
        counted,
        required,
        rule,
        f"{lost}{account.name} now asks for {_approvals(required)}; {counted} {_stand(counted)}.",
    )


def access_request_approvals_short(
    *, access_request: AccessRequest, required: int | None = None, lock: bool = False
) -> ApprovalsShort | None:
    """``approvals_short`` of a request a person decided, as its approvers and the policy are now
    (``required``: what the policy asks, read already; by default read now); None when they meet it,
    or no person decided it (an automatic rule's approval is weighed by the rule). ``lock`` as for
    ``approvals_standing``: the caller holds the request's row locked and acts on the answer."""
    decider = access_request.decided_by
    if decider is None:
        return None
    account = access_request.account
    why = decision_standing_why_not(approver=decider, account=account, request_id=access_request.pk, lock=lock)
    standing = approvals_standing(request_id=access_request.pk, account=account, lock=lock)
    if required is None:
        required = approvals_required(account)
    return approvals_short(access_request, required=required, decider_why_not=why, standing=standing)


def access_requests_approvals_short(
    *, access_requests: Sequence[AccessRequest], policies: Mapping[int, ApprovalPolicy]
) -> dict[int, ApprovalsShort | None]:
    """``access_request_approvals_short`` of each request a person decided, by pk, in two queries
    whatever their number (a list's; not locked): their approvals, and which of their approvers and
    deciders approve on their accounts now. ``policies``: the accounts' by pk (an account not in it
    has none). Reads the requests' ``decided_by`` and ``requester`` as loaded."""
    decided = [access_request for access_request in access_requests if access_request.decided_by_id is not None]
    if not decided:
        return {}
    given: dict[int, list[RequestApproval]] = defaultdict(list)
    for approval in (
        RequestApproval.objects.filter(request_id__in=[access_request.pk for access_request in decided])
        .select_related("approver")
        .order_by("id")
    ):
        given[approval.request_id].append(approval)
    people = {access_request.decided_by_id for access_request in decided} | {
        approval.approver_id for approvals in given.values() for approval in approvals
    }
    approving: dict[int, set[int]] = defaultdict(set)
    for user_id, account_id in Membership.objects.filter(
        can_approve=True, user_id__in=people, account_id__in={access_request.account_id for access_request in decided}
    ).values_list("user_id", "account_id"):
        approving[account_id].add(user_id)
    short: dict[int, ApprovalsShort | None] = {}
    for access_request in decided:
        decider, account = access_request.decided_by, access_request.account
        assert decider is not None
        approvers = approving[access_request.account_id]
        policy = policies.get(access_request.account_id)
        short[access_request.pk] = approvals_short(
            access_request,
            required=approvals_asked(policy),
            decider_why_not=decider_why_not(
                decider, account, approves_there=decider.pk in approvers, requester=access_request.requester
            ),
            standing=approvals_weighed(
                given[access_request.pk], account=account, approving=approvers, requester=access_request.requester
            ),
        )
    return short


def _approvals(count: int) -> str:
    return f"{count} approval" if count == 1 else f"{count} approvals"


def _stand(count: int) -> str:
    return "stands" if count == 1 else "stand"
