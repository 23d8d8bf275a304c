"""More time for an active request, within the 12-hour total and the account's approval policy, while
the approvals people gave it still stand."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.approval_policies import AUTO_APPROVE, NEEDS_APPROVAL, ExtensionLimit, approval_policy_hold
from accounts.models import User
from audit.services import logbook_append
from core.dispatch import task_send_on_commit
from core.errors import RequestRuleError
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.notifications import Kind, notification_enqueue
from requests_app.rules import ActionCheck
from requests_app.selectors import access_request_extend_check, access_request_extension_limits
from requests_app.services.lifecycle.common import _refuse, _status_error


def access_request_extend(*, access_request: AccessRequest, actor: User, by: timedelta) -> AccessRequest:
    # The rule the page and the API offer extensions by: the requester, active and running, still an
    # Admin of the account (more time is more access), within the 12 h and the account's policy, and
    # the approvals people gave it still standing (``selectors.access_request_approvals_short``).
    check = access_request_extend_check(access_request=access_request, user=actor, by=by)
    if not check:
        raise _refused(access_request, actor, check, by=by)
    with transaction.atomic():
        # Asked again under the account's row (``approval_policy_hold``, taken before the request's as
        # every path takes them) and of the request's row locked, as it is now: a policy saved meanwhile
        # (``policy._shorten`` cuts the request on this row, locked) is read here if it committed first,
        # or waits for this extension and cuts it back after it.
        approval_policy_hold(account_id=access_request.account_id)
        locked = (
            AccessRequest.objects.select_for_update(of=("self",)).select_related("account").get(pk=access_request.pk)
        )
        check = access_request_extend_check(access_request=locked, user=actor, by=by)
        if check:
            _extend(locked, actor=actor, by=by)
    access_request.refresh_from_db()
    if not check:
        # Refused after the transaction, which changed nothing: the Logbook entry must not roll back with it.
        raise _refused(access_request, actor, check, by=by)
    return access_request


def _extend(access_request: AccessRequest, *, actor: User, by: timedelta) -> None:
    """``by`` more for the request whose row this transaction holds, as read."""
    total = access_request.total_duration + by
    # Conditional on the row as read (its length and end too), so nothing that changed it since is
    # overwritten: two extensions at once cannot both pass the 12 h and the policy.
    updated = AccessRequest.objects.filter(
        pk=access_request.pk,
        status=RequestStatus.ACTIVE,
        duration=access_request.duration,
        extended_by=access_request.extended_by,
        expires_at=access_request.expires_at,
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
    # The people who approved it hear of the new end and total, for their information (none when a
    # rule approved it).
    notification_enqueue(kind=Kind.EXTENDED, request_id=access_request.pk)
    if access_request.approved_automatically:
        # No person approved this time either: the rule did, and the Logbook says which.
        limits = access_request_extension_limits(access_request=access_request)
        automatic = next(limit for limit in limits if limit.outcome == NEEDS_APPROVAL)
        _log_policy(access_request, outcome=AUTO_APPROVE, limit=automatic, by=by, total=total)
    # Each host's account expires at the request's end, a second lock should removal not run:
    # it moves with the end (requests_app.services.provisioning.expiry). A grant still being
    # created is moved once it is ready.
    for grant_id in Grant.objects.filter(request_id=access_request.pk, status=GrantStatus.READY).values_list(
        "pk", flat=True
    ):
        task_send_on_commit("sync_grant_expiry", grant_id)


def _refused(access_request: AccessRequest, actor: User, check: ActionCheck, *, by: timedelta) -> RequestRuleError:
    """The refusal, recorded; the policy's with the limit it broke (once per window for the same again)."""
    total = access_request.total_duration + by
    decided = None if check.limit is None else _policy_detail(check.limit.outcome, check.limit, by=by, total=total)
    return _refuse(access_request, actor, action="extend", check=check, decided=decided)


def _log_policy(
    access_request: AccessRequest, *, outcome: str, limit: ExtensionLimit, by: timedelta, total: timedelta
) -> None:
    """The policy's decision on an extension, recorded as a new request's is (``approval_policy.decided``)."""
    logbook_append(
        action="approval_policy.decided",
        actor=None,
        account=access_request.account,
        request_id=access_request.pk,
        detail=_policy_detail(outcome, limit, by=by, total=total),
    )


def _policy_detail(outcome: str, limit: ExtensionLimit, *, by: timedelta, total: timedelta) -> dict[str, object]:
    return {
        "outcome": outcome,
        "rule": limit.rule,
        "extension": True,
        "by_minutes": int(by.total_seconds() // 60),
        "total_minutes": int(total.total_seconds() // 60),
    }
