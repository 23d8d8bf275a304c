"""Asking for access: the checks a new request must pass, the cap on the person's requests waiting
for approval, and its automatic approval by policy."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts import permissions
from accounts.approval_policies import AUTO_APPROVE, DENY, PolicyDecision, approval_policy_evaluate
from accounts.models import AwsAccount, User
from audit.services import logbook_append
from core.destinations import valid_destinations
from core.errors import RequestRuleError
from core.text import unsafe_text_message
from core.usernames import grant_username
from requests_app import rules
from requests_app.iam import iam_check_instances
from requests_app.models import TERMINAL_REQUEST_STATUSES, AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.notifications import Kind, notification_enqueue
from requests_app.services.lifecycle.common import (
    DEFAULT_DURATION,
    MAX_TOTAL_DURATION,
    MIN_DURATION,
    REASON_MAX,
    TICKET_RE,
    _after_approval,
    _deny,
    _instance_ids,
    _transition,
    instance_problem,
)
from requests_app.services.os_usernames import os_username_assign, username_clashes


def access_request_create(
    *,
    requester: User,
    account: AwsAccount,
    instances: Sequence[Instance],
    reason: str,
    ticket: str = "",
    duration: timedelta = DEFAULT_DURATION,
    admin_rights: bool = False,
) -> AccessRequest:
    errors: dict[str, list[str]] = {}
    reason = (reason or "").strip()
    ticket = (ticket or "").strip()
    if not reason:
        errors.setdefault("reason", []).append("Say why you need access.")
    elif len(reason) > REASON_MAX:
        errors.setdefault("reason", []).append(f"The reason has {len(reason)} characters; at most {REASON_MAX}.")
    elif unsafe := unsafe_text_message("The reason", reason):
        errors.setdefault("reason", []).append(unsafe)
    if ticket and not TICKET_RE.fullmatch(ticket):
        errors.setdefault("ticket", []).append(
            "A ticket reference is up to 64 letters, digits and . _ # : / - characters."
        )
    elif not ticket and rules.ticket_required(requester):
        errors.setdefault("ticket", []).append(rules.TICKET_REQUIRED_MESSAGE)
    if not MIN_DURATION <= duration <= MAX_TOTAL_DURATION:
        errors.setdefault("duration", []).append(rules.DURATION_RANGE_MESSAGE)

    role_refusal = permissions.request_role_refusal(requester, account)
    if role_refusal:
        errors.setdefault("account", []).append(role_refusal)

    unique: dict[int, Instance] = {instance.pk: instance for instance in instances}
    if len(unique) > rules.INSTANCES_MAX:
        errors.setdefault("instances", []).append(rules.too_many_instances(len(unique)))
        # Refused before anything is read of them: the Logbook entry could not name them all.
        raise _deny(
            action="request.create_denied",
            actor=requester,
            account=account,
            request_id=None,
            errors=RequestRuleError(errors),
        )
    if not unique:
        errors.setdefault("instances", []).append("Choose at least one instance.")
    for instance in unique.values():
        if instance.account_id != account.pk:
            errors.setdefault("instances", []).append(
                f"{instance.instance_id} does not belong to {account.name} ({account.account_id})."
            )
            continue
        problem = instance_problem(instance)
        if problem:
            errors.setdefault("instances", []).append(problem)

    for conflict in _host_conflicts(requester, unique, admin_rights=admin_rights):
        errors.setdefault("instances", []).append(conflict)
    # The person's OS username, theirs alone (stored the first time, once nothing else refuses the
    # request): never another person's user.
    os_username = ""
    if not errors:
        os_username, shared = os_username_assign(requester)
        if shared:
            errors.setdefault("__all__", []).append(shared)
        for clash in username_clashes(requester, os_username, unique.values()):
            errors.setdefault("instances", []).append(clash)

    instance_ids = [instance.instance_id for instance in unique.values()]
    if errors:
        raise _deny(
            action="request.create_denied",
            actor=requester,
            account=account,
            request_id=None,
            errors=RequestRuleError(errors),
            instance_ids=instance_ids,
        )
    try:
        iam_check_instances(user=requester, account=account, instances=list(unique.values()), purpose="request")
    except RequestRuleError as exc:
        raise _deny(
            action="request.create_denied",
            actor=requester,
            account=account,
            request_id=None,
            errors=exc,
            instance_ids=instance_ids,
        ) from None
    decision = approval_policy_evaluate(
        account=account, requester=requester, ticket=ticket, duration=duration, admin_rights=admin_rights
    )
    if decision.outcome == DENY:
        raise _deny(
            action="request.create_denied",
            actor=requester,
            account=account,
            request_id=None,
            errors=RequestRuleError({"__all__": decision.messages}),
            instance_ids=instance_ids,
            decided={"outcome": decision.outcome, "rule": decision.rule, "requester": requester.username},
        )

    try:
        with transaction.atomic():
            if decision.outcome != AUTO_APPROVE:
                _pending_cap_check(requester)
            _host_conflicts_check(requester, unique, admin_rights=admin_rights, os_username=os_username)
            access_request = _request_store(
                requester=requester,
                os_username=os_username,
                account=account,
                unique=unique,
                reason=reason,
                ticket=ticket,
                duration=duration,
                admin_rights=admin_rights,
                decision=decision,
                instance_ids=instance_ids,
            )
    except _StoreRefused as refused:
        raise _deny(
            action="request.create_denied",
            actor=requester,
            account=account,
            request_id=None,
            errors=RequestRuleError(refused.errors),
            instance_ids=instance_ids,
        ) from None
    return access_request


def _host_conflicts(requester: User, unique: dict[int, Instance], *, admin_rights: bool) -> list[str]:
    """Why the person's requests (live, or ended with a user still to remove) on these instances
    keep them from this one: what each says, in the order of those requests."""
    # One person has one username per instance. On Linux, live grants of several requests share
    # it, each with its own certificate principal and authorized_keys line, so ending one leaves
    # the others. What the user may do (sudo) belongs to the user, not the line, so requests that
    # share it must agree on administrator rights. A Windows user has one password: one request
    # (Windows as the grant recorded it, or as the inventory says the instance is now).
    overlapping = Grant.objects.filter(request__requester=requester, instance__in=list(unique.values())).exclude(
        request__status__in=TERMINAL_REQUEST_STATUSES
    )
    conflicts = _grant_conflicts(overlapping, admin_rights=admin_rights, windows=_LIVE_WINDOWS, rights=_LIVE_RIGHTS)

    # An ended request's user stays on the host until its grant's cleanup has run (a request that
    # failed for good ends first). A Windows user's removal would take a new request's user (the
    # same name on the same host) with it: ask again once it is gone. A Linux one's sudo is the
    # user's, as for live requests: ask for the same administrator rights, or again once it is gone.
    leaving = Grant.objects.filter(
        request__requester=requester,
        instance__in=list(unique.values()),
        request__status__in=TERMINAL_REQUEST_STATUSES,
        status__in=[status for status in GrantStatus if status.needs_cleanup],
    )
    return conflicts + _grant_conflicts(leaving, admin_rights=admin_rights, windows=_LEFT_WINDOWS, rights=_LEFT_RIGHTS)


# What ``_grant_conflicts`` says of a grant in the way: ``{request}`` its request's number, ``{label}``
# its instance, ``{with_or_without}`` the administrator rights its request has.
_LIVE_WINDOWS = "You already have request #{request} for {label}; extend or complete it instead."
_LIVE_RIGHTS = (
    "You already have request #{request} for {label} {with_or_without} administrator rights; "
    "ask for the same, or complete it first."
)
_LEFT_WINDOWS = (
    "Your user on {label} from request #{request} is still being removed; "
    "ask again once it is gone (the request's page shows its cleanup)."
)
_LEFT_RIGHTS = (
    "Your user on {label} from request #{request} {with_or_without} administrator rights is still being "
    "removed; ask for the same, or ask again once it is gone (the request's page shows its cleanup)."
)


def _grant_conflicts(grants: QuerySet[Grant], *, admin_rights: bool, windows: str, rights: str) -> list[str]:
    """What each of ``grants`` (in its request's order) that keeps a new request off its instance says:
    ``windows`` for any on Windows, ``rights`` for a Linux one whose request differs in ``admin_rights``."""
    conflicts: list[str] = []
    for grant in grants.select_related("instance", "request").order_by("request_id"):
        if Instance.Platform.WINDOWS in (grant.platform, grant.instance.platform):
            message = windows
        elif grant.request.admin_rights != admin_rights:
            message = rights
        else:
            continue
        with_or_without = "with" if grant.request.admin_rights else "without"
        conflicts.append(
            message.format(request=grant.request_id, label=grant.instance.label, with_or_without=with_or_without)
        )
    return conflicts


class _StoreRefused(Exception):
    """Found within the request's transaction, which it rolls back: ``errors`` (by field, as
    ``RequestRuleError`` takes them) say why the request is refused."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _host_conflicts_check(
    requester: User, unique: dict[int, Instance], *, admin_rights: bool, os_username: str
) -> None:
    """Within the request's transaction: ``_host_conflicts`` (and ``username_clashes``) again, with the
    instances' rows held.

    The first look runs before the IAM check, a slow call to AWS, and outside any transaction: two
    requests of one person for one Windows host made at once (two API calls) would both pass it,
    and both grants use the one local user and its one password. Each request's transaction holds
    its instances' rows (FOR NO KEY UPDATE, by pk: two requests for the same hosts wait for each
    other, never in a circle; a grant inserted meanwhile by anyone else takes only FOR KEY SHARE on
    them at its commit, which this does not block) from here to its commit, so the later one looks
    again once the earlier has committed, and is refused as it would have been a moment later.
    """
    list(Instance.objects.filter(pk__in=list(unique)).select_for_update(no_key=True).order_by("pk").values_list("pk"))
    conflicts = _host_conflicts(requester, unique, admin_rights=admin_rights)
    conflicts += username_clashes(requester, os_username, unique.values())
    if conflicts:
        # Another request of the person for one of the instances (or another person's grant under
        # the same username), stored meanwhile.
        raise _StoreRefused({"instances": conflicts})


def _pending_cap_check(requester: User) -> None:
    """Within the request's transaction: refuse one more waiting request of this person, under
    any of their users, past ``PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON``.

    Each waiting request mails every approver of its account, so a loop of requests (well within
    the writes-a-minute limit) would flood their mail. The person's users are locked first, as
    terminal.slots does for sessions: two requests at once count one after the other.
    """
    person = permissions.same_person_users(requester)
    list(person.select_for_update(no_key=True).order_by("pk").values_list("pk", flat=True))
    cap = settings.PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON
    waiting = AccessRequest.objects.filter(requester__in=person, status=RequestStatus.PENDING).count()
    if waiting >= cap:
        message = (
            f"You already have {waiting} requests waiting for approval; at most {cap} may wait at once. "
            "Cancel one, or wait for a decision on one, then ask again."
        )
        raise _StoreRefused({"__all__": [message]})


def _request_store(
    *,
    requester: User,
    os_username: str,
    account: AwsAccount,
    unique: dict[int, Instance],
    reason: str,
    ticket: str,
    duration: timedelta,
    admin_rights: bool,
    decision: PolicyDecision,
    instance_ids: list[str],
) -> AccessRequest:
    """The new request, its grants and its Logbook entries; approved at once by the policy's
    decision, or put to its approvers (their mail goes once the transaction commits)."""
    # The account's as they are now (not as the caller's copy of the row had them), fixed
    # here, as the approver will be shown them: an admin's later addition widens nothing.
    stored, aws_account_id = (
        AwsAccount.objects.filter(pk=account.pk).values_list("forward_destinations", "account_id").get()
    )
    destinations = list(valid_destinations(stored))
    access_request = AccessRequest.objects.create(
        requester=requester,
        account=account,
        # Where its users will be made: the fleet acts for it in that AWS account alone.
        aws_account_id=aws_account_id,
        reason=reason,
        ticket=ticket,
        duration=duration,
        admin_rights=admin_rights,
        forward_destinations=destinations,
    )
    Grant.objects.bulk_create(_grant_for(access_request, instance, os_username) for instance in unique.values())
    logbook_append(
        action="request.created",
        actor=requester,
        account=account,
        request_id=access_request.pk,
        instance_ids=instance_ids,
        detail={
            "reason": reason,
            "ticket": ticket,
            "duration_minutes": int(duration.total_seconds() // 60),
            "admin_rights": admin_rights,
            "forward_destinations": destinations,
        },
    )
    if decision.configured:
        logbook_append(
            action="approval_policy.decided",
            actor=None,
            account=account,
            request_id=access_request.pk,
            detail={"outcome": decision.outcome, "rule": decision.rule},
        )
    if decision.outcome == AUTO_APPROVE:
        _auto_approve(access_request, rule=decision.rule)
    else:
        notification_enqueue(kind=Kind.AWAITING_APPROVAL, request_id=access_request.pk)
    return access_request


def _grant_for(access_request: AccessRequest, instance: Instance, os_username: str) -> Grant:
    """The request's grant on ``instance``, of the kind of host it is now, fixed as the approver will be
    shown it: a later inventory sync, or a tag changed since, changes nothing. Only a Windows instance
    is a domain controller; the tag on a Linux one is anyone's with ec2:CreateTags, and means nothing."""
    domain_controller = instance.platform == Instance.Platform.WINDOWS and instance.is_domain_controller
    return Grant(
        request=access_request,
        instance=instance,
        username=grant_username(os_username, domain_controller=domain_controller),
        platform=instance.platform,
        domain_controller=domain_controller,
    )


def _auto_approve(access_request: AccessRequest, *, rule: str) -> None:
    """Approve a new request by the account's policy: no person decides, the rule is recorded."""
    note = f"Approved automatically ({rule})."[:256]
    _transition(
        access_request,
        from_statuses=[RequestStatus.PENDING],
        status=RequestStatus.APPROVED,
        decided_at=timezone.now(),
        decision_note=note,
    )
    logbook_append(
        action="request.approved",
        actor=None,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=_instance_ids(access_request),
        detail={"note": note, "rule": rule, "automatic": True},
    )
    _after_approval(access_request.pk)
