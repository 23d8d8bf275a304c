"""Reads of access requests and the approval queue, always scoped to the person asking."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.db.models import Count, Prefetch, QuerySet, prefetch_related_objects
from django.shortcuts import get_object_or_404

from accounts import permissions
from accounts.approval_policies import (
    ApprovalStanding,
    ExtensionLimit,
    approval_policies_for,
    approval_policy_denials,
    approval_policy_extension_limits,
    approvals_asked,
    approvals_required,
    approvals_standing,
)
from accounts.models import ApprovalPolicy, User
from requests_app import rules
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.rules import MIN_DURATION, ActionCheck, RequestActions, extension_policy_left
from requests_app.selectors.standing import (
    ApprovalsShort,
    access_request_approvals_short,
    access_requests_approvals_short,
)


def _grants_with_instances() -> QuerySet[Grant]:
    return Grant.objects.select_related("instance").order_by("id")


def _with_related(queryset: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    return queryset.select_related("account", "requester", "decided_by", "ended_by").prefetch_related(
        Prefetch("grants", queryset=_grants_with_instances())
    )


def access_request_list(*, user: User, status: str | None = None, mine_only: bool = True) -> QuerySet[AccessRequest]:
    queryset = AccessRequest.objects.visible_to(user)
    if mine_only:
        queryset = queryset.filter(requester=user)
    if status:
        queryset = queryset.filter(status=status)
    return _with_related(queryset).order_by("-created_at", "-id")


def access_request_get(*, user: User, pk: int) -> AccessRequest:
    """The request if this person may see it; a 404 otherwise, never a hint that it exists."""
    queryset = _with_related(AccessRequest.objects.visible_to(user))
    return get_object_or_404(queryset, pk=pk)


def access_request_may_end(*, user: User, pk: object, action: str, own_only: bool = False) -> bool:
    """Whether this person may ``action`` ("complete" or "cancel") this request, whatever its state:
    then the attempt only takes access away, or changes nothing and writes nothing (a second
    completion), and is never held back by the limit on changes (``accounts.api_limits``). An
    attempt they may not make is refused with a Logbook entry, so it is counted as any change.
    ``own_only`` (a CLI token): their own request only, as ``rules.cancel_check`` and ``complete_check``."""
    if action not in ("complete", "cancel") or not isinstance(pk, int):
        return False
    access_request = AccessRequest.objects.visible_to(user).select_related("account").filter(pk=pk).first()
    if access_request is None or (own_only and not permissions.is_requester(user, access_request)):
        return False
    if action == "complete":
        return permissions.can_complete(user, access_request)
    return permissions.can_cancel(user, access_request)


def access_request_approve_check(
    *,
    access_request: AccessRequest,
    user: User,
    approves: bool | None = None,
    requester_role: str | None = None,
    policy: ApprovalPolicy | Literal["read"] | None = "read",
) -> ActionCheck:
    """Whether this person may approve the request now: ``rules.approve_check`` (who, which state),
    the requester still an Admin of the account, none of its instances in a region taken off the
    account (``access_request_region_problems``), and no deny rule of the account's approval policy
    against it, each asked again at every approval (the role may have been lowered or removed, a
    region taken off, a rule set, since they asked). ``requester_role`` and ``policy`` (the
    account's, None: it has none): read already (a list reads its rows' in a query each); by default
    each is read now, when the rest allows the approval."""
    check = rules.approve_check(access_request, user, approves=approves)
    if not check:
        return check
    refusal = permissions.access_role_refusal(
        access_request.requester, access_request.account, third_person=True, role=requester_role
    )
    if refusal is not None:
        return rules.requester_role_refusal(refusal)
    region_problems = access_request_region_problems(access_request=access_request)
    if region_problems:
        return rules.region_refusal([problem for _, problem in region_problems])
    denials = access_request_policy_denials(access_request=access_request, policy=policy)
    return rules.policy_denial_refusal(denials) if denials else check


def access_request_region_problems(*, access_request: AccessRequest) -> list[tuple[str, str]]:
    """The instances of the request out of Passport's reach now because of their region, a region
    taken off its account since it was made: (region, ``rules.instance_region_problem``) pairs, in
    grant order; empty when none is. Reads the grants the selectors here prefetched, with their
    instances; else one query."""
    prefetch_related_objects([access_request], Prefetch("grants", queryset=_grants_with_instances()))
    return [
        (grant.instance.region, problem)
        for grant in access_request.grants.all()
        if (problem := rules.instance_region_problem(grant.instance, account=access_request.account)) is not None
    ]


def access_request_policy_denials(
    *, access_request: AccessRequest, policy: ApprovalPolicy | Literal["read"] | None = "read"
) -> list[tuple[str, str]]:
    """The deny rules of the account's approval policy (``policy``: read already, None: it has none;
    by default read now) that the request, at its whole length (extensions included), breaks now:
    (rule, message) pairs (``approval_policy_denials``); empty when it breaks none."""
    return approval_policy_denials(
        account=access_request.account,
        ticket=access_request.ticket,
        admin_rights=access_request.admin_rights,
        duration=access_request.total_duration,
        policy=policy,
    )


@dataclass(frozen=True)
class ApprovalsShown:
    """The approvals of a request that needs several, for its page: how many the account asks for
    now, and each one given with whether it counts (``approval_policies.approvals_standing``)."""

    required: int
    given: list[ApprovalStanding]

    @property
    def counted(self) -> int:
        return sum(1 for one in self.given if one.counts)


def access_request_approvals(*, access_request: AccessRequest) -> ApprovalsShown | None:
    """``ApprovalsShown`` for the request's page; None when there is nothing to show (one approval
    asked for and none recorded separately: the decision says it all)."""
    given = approvals_standing(request_id=access_request.pk, account=access_request.account)
    required = approvals_required(access_request.account)
    if required <= 1 and not given:
        return None
    return ApprovalsShown(required=required, given=given)


def access_request_extend_check(
    *,
    access_request: AccessRequest,
    user: User,
    by: timedelta = MIN_DURATION,
    role: str | None = None,
    policies: Mapping[int, ApprovalPolicy] | None = None,
    shortfalls: Mapping[int, ApprovalsShort | None] | None = None,
) -> ActionCheck:
    """Whether this person may extend the request by ``by`` now: ``rules.extend_check`` (who, when),
    none of its instances in a region taken off the account, then ``rules.extension_check`` (their
    role, the 12 h, the account's policy), and the approvals people gave it still meeting the
    policy (``access_request_approvals_short``: more time is approved by no one once they no longer
    stand). The page and the API ask with the shortest extension: whether any would be accepted.
    ``role`` (the person's on the account), ``policies`` and ``shortfalls`` (by account pk, by
    request pk): read already for a list; None reads them now, when the rest allows it."""
    check = rules.extend_check(access_request, user)
    if not check:
        return check
    if region_problems := access_request_region_problems(access_request=access_request):
        return rules.region_extension_refusal([problem for _, problem in region_problems])
    check = rules.extension_check(
        access_request,
        by=by,
        role_refusal=permissions.access_role_refusal(user, access_request.account, role=role),
        limits=access_request_extension_limits(access_request=access_request, policies=policies),
    )
    if not check or access_request.decided_by_id is None:
        return check  # an automatic rule's approval: its cap is among the limits
    if shortfalls is not None:
        short = shortfalls.get(access_request.pk)
    else:
        required = None if policies is None else approvals_asked(policies.get(access_request.account_id))
        short = access_request_approvals_short(access_request=access_request, required=required)
    if short is not None:
        return rules.approvals_lost_extension_refusal(access_request, required=short.required, why=short.why)
    return check


def access_request_actions(
    *,
    access_request: AccessRequest,
    user: User,
    approves: bool | None = None,
    roles: Mapping[tuple[int, int], str] | None = None,
    policies: Mapping[int, ApprovalPolicy] | None = None,
    shortfalls: Mapping[int, ApprovalsShort | None] | None = None,
    own_only: bool = False,
) -> RequestActions:
    """What this person may do to the request now, and why not where they may not.

    The page, the API and the CLI show this; the services refuse by the same checks. Uses the
    loaded grants (prefetched by the selectors here); ``approves`` saves a query when known, as
    do ``roles`` (by user pk and account pk) and ``policies`` (by account pk) for a list.
    ``own_only``: the person came with a CLI token, which decides nothing (``SessionOnly``) and ends
    only their own access.
    """
    untouched = all(grant.status == GrantStatus.PENDING for grant in access_request.grants.all())
    if approves is None:
        approves = permissions.can_approve_on(user, access_request.account)

    def role_of(user_pk: int) -> str | None:
        return roles.get((user_pk, access_request.account_id)) if roles is not None else None

    if own_only:
        approve = reject = rules.CLI_SIGN_IN_DECIDES_NOTHING
    else:
        approve = access_request_approve_check(
            access_request=access_request,
            user=user,
            approves=approves,
            requester_role=role_of(access_request.requester_id),
            policy="read" if policies is None else policies.get(access_request.account_id),
        )
        reject = rules.reject_check(access_request, user, approves=approves)
    return RequestActions(
        approve=approve,
        reject=reject,
        cancel=rules.cancel_check(access_request, user, grants_untouched=untouched, own_only=own_only),
        extend=access_request_extend_check(
            access_request=access_request, user=user, role=role_of(user.pk), policies=policies, shortfalls=shortfalls
        ),
        complete=rules.complete_check(access_request, user, approves=approves, own_only=own_only),
    )


def access_request_actions_for_list(
    *, access_requests: Sequence[AccessRequest], user: User, approves: bool | None = None, own_only: bool = False
) -> dict[int, RequestActions]:
    """The actions of each request by pk, in a few queries whatever the length: which of their accounts
    the person approves (``approves`` True: all of them, as in the approval queue), the roles the
    checks ask about (the requesters' of pending requests, the person's own where they may extend),
    and the policies of the accounts where they may approve or extend. ``own_only`` as for
    ``access_request_actions``.
    """
    account_pks = {access_request.account_id for access_request in access_requests}
    if approves is not None:
        approvable = account_pks if approves else set()
    else:
        approvable = (
            set(permissions.approvable_accounts(user).filter(pk__in=account_pks).values_list("pk", flat=True))
            if account_pks
            else set()
        )
    # Only rows where the rest of a check passes need these: the others never ask.
    approvals = [
        access_request
        for access_request in access_requests
        if not own_only and rules.approve_check(access_request, user, approves=access_request.account_id in approvable)
    ]
    extensions = [access_request for access_request in access_requests if rules.extend_check(access_request, user)]
    roles = permissions.roles_on(
        [(access_request.requester_id, access_request.account_id) for access_request in approvals]
        + [(user.pk, access_request.account_id) for access_request in extensions]
    )
    policies = approval_policies_for(access_request.account_id for access_request in [*approvals, *extensions])
    shortfalls = access_requests_approvals_short(access_requests=extensions, policies=policies)
    return {
        access_request.pk: access_request_actions(
            access_request=access_request,
            user=user,
            approves=access_request.account_id in approvable,
            roles=roles,
            policies=policies,
            shortfalls=shortfalls,
            own_only=own_only,
        )
        for access_request in access_requests
    }


def access_request_get_with_actions(
    *, user: User, pk: int, own_only: bool = False
) -> tuple[AccessRequest, RequestActions]:
    """The request (404 if the person may not see it) and what they may do to it (``own_only`` as for
    ``access_request_actions``)."""
    access_request = access_request_get(user=user, pk=pk)
    return access_request, access_request_actions(access_request=access_request, user=user, own_only=own_only)


def access_request_extension_limits(
    *, access_request: AccessRequest, policies: Mapping[int, ApprovalPolicy] | None = None
) -> list[ExtensionLimit]:
    """What the account's approval policy lets this request's total reach (``approval_policy_extension_limits``).

    ``policies``: the accounts' policies by account pk, read already for a list (an account not in
    it has none); None reads this one's now."""
    return approval_policy_extension_limits(
        account=access_request.account,
        requester=access_request.requester,
        ticket=access_request.ticket,
        admin_rights=access_request.admin_rights,
        approved_automatically=access_request.approved_automatically,
        policy="read" if policies is None else policies.get(access_request.account_id),
    )


def access_request_extension_left(*, access_request: AccessRequest) -> timedelta:
    """How much more time an extension may add (the 12 h and the account's policy): the choices the
    request page offers. At least the shortest extension exactly when ``access_request_extend_check``
    allows one (the same limits, ``rules.extension_check``)."""
    return extension_policy_left(access_request, access_request_extension_limits(access_request=access_request))


def access_requests_expire_at(*, pks: Iterable[int]) -> dict[int, datetime | None]:
    """When each request ends as things stand (None before its clock starts; a request that does
    not exist is left out): the open terminals re-read it."""
    return dict(AccessRequest.objects.filter(pk__in=set(pks)).values_list("pk", "expires_at"))


def _waiting_for(user: User) -> QuerySet[AccessRequest]:
    """Pending requests this person may decide: their accounts, never their own (under any of their users)."""
    return AccessRequest.objects.filter(
        status=RequestStatus.PENDING, account__in=permissions.approvable_accounts(user)
    ).exclude(requester__in=permissions.same_person_users(user))


def approval_queue(*, user: User) -> QuerySet[AccessRequest]:
    """Pending requests this person may decide: their accounts, never their own."""
    return _with_related(_waiting_for(user)).annotate(instance_count=Count("grants")).order_by("created_at", "id")


def approval_queue_count(*, user: User) -> int:
    """How many requests wait for this person's decision (the queue's rows, counted; the nav shows it)."""
    return _waiting_for(user).count()
