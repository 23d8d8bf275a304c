"""What a person may do to an access request now: the one rule the page, the API and the services share.

Each check reads loaded data only: the request, its account, and what the caller read for it
(whether its grants were touched, the requester's role on the account, the account's approval
policy). The selectors read those and put the checks together (``selectors.access_request_actions``,
``access_request_approve_check``, ``access_request_extend_check``), once for a whole list, so the
page, the API and the services ask the same question. When an action is not available the
check says why, in the words the service's refusal uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from accounts import permissions
from accounts.approval_policies import DENY, ExtensionLimit
from accounts.models import AwsAccount, User
from core.errors import NotAllowed, RequestRuleError
from core.text import visible
from requests_app.models import LIVE_REQUEST_STATUSES, AccessRequest, Instance, RequestStatus

MIN_DURATION = timedelta(minutes=15)
MAX_TOTAL_DURATION = timedelta(hours=12)
# What the service, the API and so the CLI say of a duration outside that range, whichever side.
DURATION_RANGE_MESSAGE = (
    "Access lasts at least 15 minutes and at most 12 hours, extensions included (15 to 720 minutes)."
)
EXTEND_AT_LEAST_MESSAGE = "Extend by at least 15 minutes."
# How many instances one request may name (the API's list, the page's form, the service). Each of
# its Logbook entries names them all, in a column of 2000 characters that holds 99 of the longest
# ids ("i-" and 17 hex digits, a space between): past that the entry could not be written whole.
INSTANCES_MAX = 90


def too_many_instances(count: int) -> str:
    """What the service, the API and the page say of a request naming more than ``INSTANCES_MAX``."""
    return f"Choose at most {INSTANCES_MAX} instances for one request ({count} were named)."


TICKET_REQUIRED_MESSAGE = "Support engineers must name the customer's ticket this access is for."


def ticket_required(requester: User) -> bool:
    """Whether a request by ``requester`` must name a ticket (the form, the API and the service ask this).

    Support engineers (the internal identity store) act on a customer's behalf: the customer's
    ticket says why. Everyone else may leave it out.
    """
    return requester.identity_store == User.IdentityStore.INTERNAL


# The order the API lists them in.
ACTION_NAMES = ("approve", "reject", "cancel", "extend", "complete")


@dataclass(frozen=True)
class ActionCheck:
    """Whether one action is available; if not, why (``reason``) and how a service refuses (``code``)."""

    allowed: bool
    reason: str = ""
    # "forbidden" (not this person's to do), "conflict" (not in this state), "invalid" (nothing left to ask for).
    code: str = ""
    field: str = "__all__"
    # The account's policy limit an extension would break, for the Logbook's record of the decision.
    limit: ExtensionLimit | None = None
    # A refusal the Logbook keeps although it is a "conflict" (something changed since the request
    # was made, such as the requester's role): the service writes it down as a denial.
    logged: bool = False

    def __bool__(self) -> bool:
        return self.allowed

    def error(self) -> RequestRuleError:
        if self.code == "forbidden" and self.field == "__all__":
            return NotAllowed(self.reason)
        return RequestRuleError({self.field: [self.reason]}, code=self.code or "invalid")


ALLOWED = ActionCheck(allowed=True)


def _refused(
    reason: str, code: str, field: str = "__all__", *, limit: ExtensionLimit | None = None, logged: bool = False
) -> ActionCheck:
    return ActionCheck(allowed=False, reason=reason, code=code, field=field, limit=limit, logged=logged)


@dataclass(frozen=True)
class RequestActions:
    approve: ActionCheck
    reject: ActionCheck
    cancel: ActionCheck
    extend: ActionCheck
    complete: ActionCheck

    def __iter__(self) -> Iterator[tuple[str, ActionCheck]]:
        return iter((name, getattr(self, name)) for name in ACTION_NAMES)

    @property
    def available(self) -> list[str]:
        return [name for name, check in self if check]

    @property
    def any(self) -> bool:
        return bool(self.available)


def format_duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def status_conflict(access_request: AccessRequest, verb: str) -> ActionCheck:
    if access_request.status == RequestStatus.EXPIRED and access_request.expired_unapproved:
        return _refused(
            f"Request #{access_request.pk} expired before it was approved; it cannot be {verb}. "
            "Ask for access again if it is still needed.",
            "conflict",
        )
    return _refused(
        f"Request #{access_request.pk} is {access_request.get_status_display().lower()}; it cannot be {verb}.",
        "conflict",
    )


def extension_left(access_request: AccessRequest) -> timedelta:
    return max(MAX_TOTAL_DURATION - access_request.total_duration, timedelta(0))


def extension_budget_refusal(access_request: AccessRequest) -> ActionCheck:
    return _refused(
        f"Access lasts at most 12 hours in total; this request has "
        f"{format_duration(access_request.total_duration)}, so at most "
        f"{format_duration(extension_left(access_request))} more.",
        "invalid",
        field="by",
    )


def extension_policy_left(access_request: AccessRequest, limits: Sequence[ExtensionLimit]) -> timedelta:
    """``extension_left``, within the account's policy as well (``approval_policy_extension_limits``)."""
    left = extension_left(access_request)
    for limit in limits:
        left = min(left, max(limit.most - access_request.total_duration, timedelta(0)))
    return left


def extension_policy_refusal(access_request: AccessRequest, limit: ExtensionLimit) -> ActionCheck:
    """Why the account's policy refuses this much more time: ``limit`` is the one the extension breaks."""
    if limit.outcome != DENY:
        # No approver is asked about an extension: the person asks for the time in a new request.
        reason = (
            f"Request #{access_request.pk} was approved automatically, and {limit.reason}; more time needs an "
            "approver. Ask for the time you need in a new request."
        )
    elif limit.most <= timedelta(0):
        reason = f"{limit.reason}; this request can no longer be extended."
    else:
        total = access_request.total_duration
        left = max(limit.most - total, timedelta(0))
        room = (
            f"it can be extended by at most {format_duration(left)}"
            if left >= MIN_DURATION
            else "it can no longer be extended"
        )
        reason = f"{limit.reason}; this request has {format_duration(total)}, so {room}."
    return _refused(reason, "invalid", field="by", limit=limit)


def approvals_lost_extension_refusal(access_request: AccessRequest, *, required: int, why: str) -> ActionCheck:
    """The approvals people gave the request no longer meet the account's policy (``required`` and
    ``why``, of ``selectors.access_request_approvals_short``): no more time, for no approval stands
    behind it. The access already granted runs its course; the Logbook keeps the refusal."""
    lost = "its approval no longer stands" if required <= 1 else "its approvals no longer stand"
    return _refused(
        f"Request #{access_request.pk} cannot be extended: {lost}. {why} Ask for the time you need in a new request.",
        "invalid",
    )


def approve_check(access_request: AccessRequest, user: object, *, approves: bool | None = None) -> ActionCheck:
    check = _decide_check(access_request, user, approves=approves, verb="approved")
    if check and timezone.now() >= access_request.approval_deadline:
        # Past its wait the request is the expiry sweep's, even before the sweep (every 10 s) reaches it.
        return _refused(
            f"Request #{access_request.pk} was not approved within {settings.PASSPORT_PENDING_REQUEST_HOURS} h of "
            "being made, so it expires unapproved; it cannot be approved. Ask for access again if it is still needed.",
            "conflict",
        )
    return check


def reject_check(access_request: AccessRequest, user: object, *, approves: bool | None = None) -> ActionCheck:
    return _decide_check(access_request, user, approves=approves, verb="rejected")


def _decide_check(access_request: AccessRequest, user: object, *, approves: bool | None, verb: str) -> ActionCheck:
    if permissions.is_requester(user, access_request):
        return _refused(
            "You cannot approve your own request."
            if verb == "approved"
            else "You cannot decide your own request; cancel it instead.",
            "forbidden",
        )
    if permissions.is_requester_in_person(user, access_request):
        # Another user of the person who asked (a break-glass account beside their SSO one).
        decide = "approve" if verb == "approved" else "decide"
        return _refused(
            f"You cannot {decide} your own request: {access_request.requester.username} asked for it, and that "
            f"user has your email ({permissions.person_email(user)}). Another approver must decide it.",
            "forbidden",
        )
    if not permissions.can_decide(user, access_request, approves=approves):
        return _refused(f"You do not approve requests for {access_request.account.name}.", "forbidden")
    if access_request.status != RequestStatus.PENDING:
        return status_conflict(access_request, verb)
    return ALLOWED


def requester_role_refusal(refusal: str) -> ActionCheck:
    """The requester is no longer an Admin of the account (``permissions.access_role_refusal``, said of
    them): the request stays pending, for the approver to reject, or to approve once the role is back."""
    return _refused(f"{refusal} It cannot be approved; reject it instead.", "conflict", logged=True)


def instance_region_problem(instance: Instance, *, account: AwsAccount) -> str | None:
    """Why this instance of ``account`` is out of Passport's reach because of its region, or None: the
    account no longer lists it (a region taken off). No new request, approval, user, session or AWS
    credentials reach it there; grants already live there are still removed, reconciled and their
    sessions ended."""
    if instance.region in account.managed_regions:
        return None
    # The inventory no longer visits it: what it says of the instance is as old as the change.
    region, name = visible(instance.region), visible(account.name)
    return f"{instance.label} is in {region}, a region Passport no longer manages in {name}."


def region_refusal(problems: Sequence[str]) -> ActionCheck:
    """Instances of the request are in a region taken off its account since it was made
    (``instance_region_problem`` of each): it stays pending, for the approver to reject, or to approve
    once the region is listed again; the Logbook keeps the refusal."""
    return _refused(f"{' '.join(problems)} It cannot be approved; reject it instead.", "conflict", logged=True)


def region_extension_refusal(problems: Sequence[str]) -> ActionCheck:
    """The request's instances are in a region taken off its account (``instance_region_problem`` of
    each): no more time there, as no new access; the Logbook keeps the refusal."""
    return _refused(f"{' '.join(problems)} It cannot be extended.", "conflict", logged=True)


def policy_denial_refusal(denials: Sequence[tuple[str, str]]) -> ActionCheck:
    """The account's approval policy, as it is now, denies the request: a deny rule set while it
    waited (``approval_policy_denials``, (rule, message) pairs). It stays pending, for the
    approver to reject, or to approve once the rule is lifted; the Logbook keeps the refusal."""
    messages = " ".join(message for _, message in denials)
    names = ", ".join(rule for rule, _ in denials)
    that = "That rule" if len(denials) == 1 else "Those rules"
    was = "was" if len(denials) == 1 else "were"
    return _refused(
        f"{messages} {that} of the account's approval policy ({names}) {was} set after this request was made: "
        "it cannot be approved; reject it instead.",
        "conflict",
        logged=True,
    )


def second_approval_refusal(access_request: AccessRequest, earlier_approver: User) -> ActionCheck:
    """One of several approvals the request needs was given by this person under another user of theirs."""
    return _refused(
        f"You have approved request #{access_request.pk} already, as {earlier_approver.username} (the same "
        "email); it needs its next approval from another person.",
        "forbidden",
    )


# A CLI sign-in's token decides nothing and ends only its person's own access (``permissions``, where
# the words are); ``own_only`` below says the person came with one.
CLI_SIGN_IN_DECIDES_NOTHING = _refused(permissions.CLI_SIGN_IN_DECIDES_NOTHING, "forbidden")
CLI_SIGN_IN_ENDS_OWN_ACCESS_ONLY = _refused(permissions.CLI_SIGN_IN_ENDS_OWN_ACCESS_ONLY, "forbidden")


def cancel_check(
    access_request: AccessRequest, user: object, *, grants_untouched: bool, own_only: bool = False
) -> ActionCheck:
    """Withdraw before anything may exist on an instance: pending, or approved with no grant claimed yet.
    ``own_only`` (a CLI token): of what they may cancel, the person's own request only."""
    if not permissions.can_cancel(user, access_request):
        return _refused("Only the requester can cancel a request.", "forbidden")
    if own_only and not permissions.is_requester(user, access_request):
        return CLI_SIGN_IN_ENDS_OWN_ACCESS_ONLY
    if access_request.status == RequestStatus.PENDING:
        return ALLOWED
    if access_request.status == RequestStatus.APPROVED and grants_untouched:
        return ALLOWED
    if access_request.status in LIVE_REQUEST_STATUSES:
        return _refused("Provisioning has started; complete the request instead, so its users are removed.", "conflict")
    return status_conflict(access_request, "cancelled")


def extend_check(access_request: AccessRequest, user: object, *, now: datetime | None = None) -> ActionCheck:
    """Who and when: the requester, while the access is active and running. How much more is
    ``extension_check``'s (``selectors.access_request_extend_check`` asks both)."""
    if not permissions.can_extend(user, access_request):
        return _refused("Only the requester can extend a request.", "forbidden")
    if access_request.status != RequestStatus.ACTIVE:
        return status_conflict(access_request, "extended")
    if access_request.expires_at is None or access_request.expires_at <= (now or timezone.now()):
        return _refused(
            f"Request #{access_request.pk} has run out and is ending; it can no longer be extended.", "conflict"
        )
    return ALLOWED


def extension_check(
    access_request: AccessRequest, *, by: timedelta, role_refusal: str | None, limits: Sequence[ExtensionLimit]
) -> ActionCheck:
    """Whether ``by`` more is allowed: the requester still an Admin of the account (``role_refusal``
    None), at least the shortest extension, within the 12 h and the account's policy (``limits``).

    With ``by`` the shortest extension (``MIN_DURATION``) it says whether any extension would be
    accepted: what the page and the API offer. The first broken limit is the check's ``limit``.
    """
    if role_refusal is not None:
        # More time is more access: only while the requester is still an Admin of the account.
        return _refused(role_refusal, "forbidden")
    if by < MIN_DURATION:
        return _refused(EXTEND_AT_LEAST_MESSAGE, "invalid", field="by")
    total = access_request.total_duration + by
    if total > MAX_TOTAL_DURATION:
        return extension_budget_refusal(access_request)
    broken = next((limit for limit in limits if total > limit.most), None)
    if broken is not None:
        return extension_policy_refusal(access_request, broken)
    return ALLOWED


def complete_check(
    access_request: AccessRequest, user: object, *, approves: bool | None = None, own_only: bool = False
) -> ActionCheck:
    """End live access now. ``own_only`` (a CLI token): of what they may complete, the person's own
    request only."""
    if not permissions.can_complete(user, access_request, approves=approves):
        return _refused("Only the requester or an approver of the account can complete a request.", "forbidden")
    if own_only and not permissions.is_requester(user, access_request):
        return CLI_SIGN_IN_ENDS_OWN_ACCESS_ONLY
    if access_request.status not in LIVE_REQUEST_STATUSES:
        return status_conflict(access_request, "completed")
    return ALLOWED
