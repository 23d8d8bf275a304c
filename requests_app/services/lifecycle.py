"""The access-request lifecycle: one service per transition.

Every transition is a conditional UPDATE on the current status, so a double click, two
approvers at once or a duplicate task applies it once; the loser sees the new state.
Work for the fleet is enqueued only after commit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts import permissions
from accounts.approval_policies import (
    AUTO_APPROVE,
    DENY,
    approval_policy_evaluate,
    approval_record,
    approvals_required,
)
from accounts.iam import iam_check_instances
from accounts.models import AwsAccount, Membership, User
from accounts.notifications import Kind, notification_dispatch, notification_enqueue
from audit.services import logbook_append
from requests_app.errors import NotAllowed, RequestRuleError
from requests_app.models import (
    TERMINAL_REQUEST_STATUSES,
    AccessRequest,
    EndReason,
    Grant,
    GrantStatus,
    Instance,
    RequestStatus,
)
from requests_app.usernames import username_for

MIN_DURATION = timedelta(minutes=15)
DEFAULT_DURATION = timedelta(hours=1)
MAX_TOTAL_DURATION = timedelta(hours=12)
REASON_MAX = 256
TICKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._#:/-]{0,63}$")


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()


def instance_problem(instance: Instance) -> str | None:
    """Why this instance cannot be reached through Passport, or None."""
    label = f"{instance.instance_id} ({instance.name})" if instance.name else instance.instance_id
    if instance.gone_at is not None:
        return f"{label} no longer exists in the account."
    if not instance.ssm_managed:
        return f"{label} is not managed by AWS Systems Manager."
    if instance.ping_status != "Online":
        return f"{label} is not reachable by Systems Manager (ping status {instance.ping_status or 'unknown'})."
    minimum = settings.PASSPORT_MIN_AGENT_VERSION
    if version_tuple(instance.agent_version) < version_tuple(minimum):
        return f"{label} runs SSM Agent {instance.agent_version or 'unknown'}; Passport needs {minimum} or newer."
    return None


def _format_duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _deny(
    *,
    action: str,
    actor: User,
    account: AwsAccount | None,
    request_id: int | None,
    errors: RequestRuleError,
    instance_ids: Sequence[str] = (),
) -> RequestRuleError:
    """Write a refusal to the Logbook (it outlives the refused transaction) and return the error to raise."""
    logbook_append(
        action=action,
        actor=actor,
        account=account,
        request_id=request_id,
        instance_ids=instance_ids,
        detail={"denied": errors.errors},
    )
    return errors


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
    if ticket and not TICKET_RE.fullmatch(ticket):
        errors.setdefault("ticket", []).append(
            "A ticket reference is up to 64 letters, digits and . _ # : / - characters."
        )
    elif not ticket and requester.identity_store == User.IdentityStore.INTERNAL:
        # Support engineers act on a customer's behalf: the customer's ticket says why.
        errors.setdefault("ticket", []).append("Support engineers must name the customer's ticket this access is for.")
    if duration < MIN_DURATION:
        errors.setdefault("duration", []).append("Access lasts at least 15 minutes.")
    elif duration > MAX_TOTAL_DURATION:
        errors.setdefault("duration", []).append("Access lasts at most 12 hours, extensions included.")

    role = permissions.role_on(requester, account)
    if role != Membership.Role.ADMIN:
        role_label = Membership.Role(role).label
        errors.setdefault("account", []).append(
            f"You have the {role_label} role on {account.name} ({account.account_id}); only Admin may request access."
        )

    unique: dict[int, Instance] = {instance.pk: instance for instance in instances}
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

    # One person has one username per instance. On Linux, live grants of several requests share
    # it, each with its own certificate principal and authorized_keys line, so ending one leaves
    # the others. What the user may do (sudo) belongs to the user, not the line, so requests that
    # share it must agree on administrator rights. A Windows user has one password: one request.
    overlapping = (
        Grant.objects.filter(request__requester=requester, instance__in=list(unique.values()))
        .exclude(request__status__in=TERMINAL_REQUEST_STATUSES)
        .select_related("instance", "request")
        .order_by("request_id")
    )
    for grant in overlapping:
        if grant.instance.platform == Instance.Platform.WINDOWS:
            errors.setdefault("instances", []).append(
                f"You already have request #{grant.request_id} for {grant.instance}; extend or complete it instead."
            )
        elif grant.request.admin_rights != admin_rights:
            with_or_without = "with" if grant.request.admin_rights else "without"
            errors.setdefault("instances", []).append(
                f"You already have request #{grant.request_id} for {grant.instance} {with_or_without} administrator "
                "rights; ask for the same, or complete it first."
            )

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
        logbook_append(
            action="approval_policy.decided",
            actor=None,
            account=account,
            instance_ids=instance_ids,
            detail={"outcome": decision.outcome, "rule": decision.rule, "requester": requester.username},
        )
        raise _deny(
            action="request.create_denied",
            actor=requester,
            account=account,
            request_id=None,
            errors=RequestRuleError({"__all__": decision.messages}),
            instance_ids=instance_ids,
        )

    with transaction.atomic():
        access_request = AccessRequest.objects.create(
            requester=requester,
            account=account,
            reason=reason,
            ticket=ticket,
            duration=duration,
            admin_rights=admin_rights,
        )
        Grant.objects.bulk_create(
            Grant(
                request=access_request,
                instance=instance,
                username=username_for(user_id=requester.pk, domain_controller=instance.is_domain_controller),
            )
            for instance in unique.values()
        )
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


def _after_approval(request_id: int) -> None:
    def after_commit() -> None:
        _enqueue("begin_provisioning", request_id)
        notification_dispatch(kind=Kind.APPROVED, request_id=request_id)

    transaction.on_commit(after_commit)


def _transition(
    access_request: AccessRequest, *, from_statuses: Sequence[str], only_if: Q | None = None, **changes: object
) -> bool:
    """Apply ``changes`` only if the request is still in one of ``from_statuses`` (and matches ``only_if``)."""
    rows = AccessRequest.objects.filter(pk=access_request.pk, status__in=from_statuses)
    if only_if is not None:
        rows = rows.filter(only_if)
    updated = rows.update(**changes)
    access_request.refresh_from_db()
    return updated == 1


def _check_approver(access_request: AccessRequest, approver: User, *, action: str) -> None:
    if permissions.is_requester(approver, access_request):
        raise _deny(
            action=f"request.{action}_denied",
            actor=approver,
            account=access_request.account,
            request_id=access_request.pk,
            errors=NotAllowed(
                "You cannot approve your own request."
                if action == "approve"
                else "You cannot decide your own request; cancel it instead."
            ),
        )
    if not permissions.can_decide(approver, access_request):
        raise _deny(
            action=f"request.{action}_denied",
            actor=approver,
            account=access_request.account,
            request_id=access_request.pk,
            errors=NotAllowed(f"You do not approve requests for {access_request.account.name}."),
        )


def _status_error(access_request: AccessRequest, verb: str) -> RequestRuleError:
    return RequestRuleError(
        f"Request #{access_request.pk} is {access_request.get_status_display().lower()}; it cannot be {verb}.",
        code="conflict",
    )


def access_request_approve(*, access_request: AccessRequest, approver: User, note: str = "") -> AccessRequest:
    _check_approver(access_request, approver, action="approve")
    required = approvals_required(access_request.account)
    with transaction.atomic():
        if required > 1 and _approvals_short(access_request, approver=approver, required=required, note=note):
            return access_request
        moved = _transition(
            access_request,
            from_statuses=[RequestStatus.PENDING],
            status=RequestStatus.APPROVED,
            decided_by=approver,
            decided_at=timezone.now(),
            decision_note=note[:256],
        )
        if not moved:
            if access_request.decided_by_id == approver.pk and access_request.status not in (
                RequestStatus.REJECTED,
                RequestStatus.CANCELLED,
            ):
                return access_request  # the same approval again: nothing to do
            raise _status_error(access_request, "approved")
        logbook_append(
            action="request.approved",
            actor=approver,
            account=access_request.account,
            request_id=access_request.pk,
            instance_ids=_instance_ids(access_request),
            detail={"note": note[:256]},
        )
        _after_approval(access_request.pk)
    return access_request


def _approvals_short(access_request: AccessRequest, *, approver: User, required: int, note: str) -> bool:
    """Record one of several approvals the account asks for; True while more are needed.

    The request row is locked, so two approvers at once count one after the other.
    """
    locked = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
    if locked.status != RequestStatus.PENDING:
        return False  # let the transition report what happened meanwhile
    count, created = approval_record(request_id=access_request.pk, approver=approver, note=note)
    if created:
        logbook_append(
            action="request.approval_recorded",
            actor=approver,
            account=access_request.account,
            request_id=access_request.pk,
            detail={"approvals": count, "required": required, "rule": f"approvals_required={required}"},
        )
    access_request.refresh_from_db()
    return count < required


def access_request_reject(*, access_request: AccessRequest, approver: User, note: str = "") -> AccessRequest:
    _check_approver(access_request, approver, action="reject")
    with transaction.atomic():
        moved = _transition(
            access_request,
            from_statuses=[RequestStatus.PENDING],
            status=RequestStatus.REJECTED,
            decided_by=approver,
            decided_at=timezone.now(),
            decision_note=note[:256],
            ended_at=timezone.now(),
        )
        if not moved:
            if access_request.status == RequestStatus.REJECTED:
                return access_request
            raise _status_error(access_request, "rejected")
        Grant.objects.filter(request=access_request).update(status=GrantStatus.REMOVED, removed_at=timezone.now())
        logbook_append(
            action="request.rejected",
            actor=approver,
            account=access_request.account,
            request_id=access_request.pk,
            detail={"note": note[:256]},
        )
        notification_enqueue(kind=Kind.REJECTED, request_id=access_request.pk)
    return access_request


def access_request_cancel(*, access_request: AccessRequest, actor: User) -> AccessRequest:
    if not permissions.can_cancel(actor, access_request):
        raise _deny(
            action="request.cancel_denied",
            actor=actor,
            account=access_request.account,
            request_id=access_request.pk,
            errors=NotAllowed("Only the requester can cancel a request."),
        )
    with transaction.atomic():
        # Once a grant has been claimed something may exist on an instance: that needs
        # completion (with cleanup), not cancellation.
        untouched = not Grant.objects.filter(request=access_request).exclude(status=GrantStatus.PENDING).exists()
        allowed = [RequestStatus.PENDING, RequestStatus.APPROVED] if untouched else [RequestStatus.PENDING]
        moved = _transition(
            access_request,
            from_statuses=allowed,
            status=RequestStatus.CANCELLED,
            ended_at=timezone.now(),
            ended_by=actor,
        )
        if not moved:
            if access_request.status == RequestStatus.CANCELLED:
                return access_request
            if access_request.status in (RequestStatus.APPROVED, RequestStatus.PROVISIONING, RequestStatus.ACTIVE):
                raise RequestRuleError(
                    "Provisioning has started; complete the request instead, so its users are removed.",
                    code="conflict",
                )
            raise _status_error(access_request, "cancelled")
        Grant.objects.filter(request=access_request).update(status=GrantStatus.REMOVED, removed_at=timezone.now())
        logbook_append(
            action="request.cancelled",
            actor=actor,
            account=access_request.account,
            request_id=access_request.pk,
        )
    return access_request


def access_request_extend(*, access_request: AccessRequest, actor: User, by: timedelta) -> AccessRequest:
    if not permissions.can_extend(actor, access_request):
        raise _deny(
            action="request.extend_denied",
            actor=actor,
            account=access_request.account,
            request_id=access_request.pk,
            errors=NotAllowed("Only the requester can extend a request."),
        )
    if access_request.status != RequestStatus.ACTIVE:
        raise _status_error(access_request, "extended")
    if by < MIN_DURATION:
        raise RequestRuleError({"by": ["Extend by at least 15 minutes."]})
    total = access_request.total_duration + by
    if total > MAX_TOTAL_DURATION:
        left = MAX_TOTAL_DURATION - access_request.total_duration
        raise _deny(
            action="request.extend_denied",
            actor=actor,
            account=access_request.account,
            request_id=access_request.pk,
            errors=RequestRuleError(
                {
                    "by": [
                        f"Access lasts at most 12 hours in total; this request has "
                        f"{_format_duration(access_request.total_duration)}, so at most "
                        f"{_format_duration(max(left, timedelta(0)))} more."
                    ]
                }
            ),
        )
    with transaction.atomic():
        # Conditional on the extension seen, so two extensions at once cannot both pass the 12 h check.
        updated = AccessRequest.objects.filter(
            pk=access_request.pk,
            status=RequestStatus.ACTIVE,
            extended_by=access_request.extended_by,
            expires_at__gt=timezone.now(),
        ).update(extended_by=F("extended_by") + by, expires_at=F("expires_at") + by)
        access_request.refresh_from_db()
        if not updated:
            if access_request.status != RequestStatus.ACTIVE:
                raise _status_error(access_request, "extended")
            if access_request.expires_at and access_request.expires_at <= timezone.now():
                raise RequestRuleError(
                    f"Request #{access_request.pk} has run out and is ending; it can no longer be extended.",
                    code="conflict",
                )
            raise RequestRuleError("The request changed meanwhile; reload and try again.", code="conflict")
        logbook_append(
            action="request.extended",
            actor=actor,
            account=access_request.account,
            request_id=access_request.pk,
            detail={
                "by_minutes": int(by.total_seconds() // 60),
                "expires_at": access_request.expires_at,
                "total_minutes": int(access_request.total_duration.total_seconds() // 60),
            },
        )
    return access_request


def _begin_ending(access_request: AccessRequest, *, actor: User | None, end_reason: str, action: str) -> bool:
    """Move a live request to ``completing`` and queue removal of everything it created."""
    now = timezone.now()
    moved = _transition(
        access_request,
        from_statuses=[RequestStatus.APPROVED, RequestStatus.PROVISIONING, RequestStatus.ACTIVE]
        if end_reason == EndReason.COMPLETED
        else [RequestStatus.ACTIVE],
        # Expiry re-checks the time in the UPDATE itself: an extension that landed after the
        # sweep read the row must win.
        only_if=Q(expires_at__lte=now) if end_reason == EndReason.EXPIRED else None,
        status=RequestStatus.COMPLETING,
        end_reason=end_reason,
        ended_at=now,
        ended_by=actor,
    )
    if not moved:
        return False
    # Credentials die with the request: the Windows passwords are wiped now, not after cleanup.
    Grant.objects.filter(request=access_request).update(password_sealed=None)
    # Grants never attempted left nothing behind; the rest (a pending grant waiting for a
    # retry may have half-created its user) are cleaned up.
    Grant.objects.filter(request=access_request, status=GrantStatus.PENDING, attempts=0).update(
        status=GrantStatus.REMOVED, removed_at=now
    )
    Grant.objects.filter(request=access_request).filter(
        Q(status__in=[GrantStatus.PROVISIONING, GrantStatus.READY, GrantStatus.FAILED])
        | Q(status=GrantStatus.PENDING, attempts__gt=0)
    ).update(status=GrantStatus.REMOVING, next_attempt_at=None)
    logbook_append(
        action=action,
        actor=actor,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=_instance_ids(access_request),
        detail={"end_reason": end_reason},
    )
    _schedule_cleanup(access_request)
    _close_terminals_on_commit(access_request.pk, end_reason)
    access_request_settle(access_request=access_request)
    return True


def _close_terminals_on_commit(request_id: int, end_reason: str) -> None:
    # Open browser terminals of this request close as soon as the ending is committed.
    from terminal.services import terminals_close_for_request, terminals_may_be_open

    if terminals_may_be_open(request_id=request_id):
        transaction.on_commit(lambda: terminals_close_for_request(request_id=request_id, end_reason=end_reason))


def access_request_settle(*, access_request: AccessRequest) -> bool:
    """Close a request whose cleanup is over: ``completing`` becomes ``completed`` or ``expired``."""
    if access_request.grants.exclude(status=GrantStatus.REMOVED).exists():
        return False
    final = RequestStatus.EXPIRED if access_request.end_reason == EndReason.EXPIRED else RequestStatus.COMPLETED
    if not _transition(access_request, from_statuses=[RequestStatus.COMPLETING], status=final):
        return False
    logbook_append(
        action=f"request.{final}",
        actor=None,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=_instance_ids(access_request),
    )
    return True


def access_request_complete(*, access_request: AccessRequest, actor: User) -> AccessRequest:
    if not permissions.can_complete(actor, access_request):
        raise _deny(
            action="request.complete_denied",
            actor=actor,
            account=access_request.account,
            request_id=access_request.pk,
            errors=NotAllowed("Only the requester or an approver of the account can complete a request."),
        )
    with transaction.atomic():
        if not _begin_ending(access_request, actor=actor, end_reason=EndReason.COMPLETED, action="request.completing"):
            if access_request.status in (RequestStatus.COMPLETING, RequestStatus.COMPLETED, RequestStatus.EXPIRED):
                return access_request
            raise _status_error(access_request, "completed")
    return access_request


def access_request_expire(*, access_request: AccessRequest) -> bool:
    """End a request whose time is up. Returns False if it was not due (or already ending)."""
    with transaction.atomic():
        if access_request.expires_at is None or access_request.expires_at > timezone.now():
            return False
        return _begin_ending(access_request, actor=None, end_reason=EndReason.EXPIRED, action="request.expiring")


def due_for_expiry(*, now: object | None = None) -> list[int]:
    return list(
        AccessRequest.objects.filter(status=RequestStatus.ACTIVE, expires_at__lte=now or timezone.now())
        .order_by("expires_at")
        .values_list("pk", flat=True)[:500]
    )


def _instance_ids(access_request: AccessRequest) -> list[str]:
    return list(access_request.grants.values_list("instance__instance_id", flat=True))


def _schedule_cleanup(access_request: AccessRequest) -> None:
    grant_ids = list(access_request.grants.filter(status=GrantStatus.REMOVING).values_list("pk", flat=True))

    def enqueue() -> None:
        for grant_id in grant_ids:
            _enqueue("deprovision_grant", grant_id)

    transaction.on_commit(enqueue)


def _enqueue(task_name: str, object_id: int) -> None:
    """Queue a worker task by name (imported late: tasks import these services)."""
    from workers import tasks

    getattr(tasks, task_name).delay(object_id)
