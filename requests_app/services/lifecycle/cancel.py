"""The requester withdraws a request before anything exists on an instance."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.services import logbook_append
from core.errors import RequestRuleError
from requests_app import rules
from requests_app.models import LIVE_REQUEST_STATUSES, AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.services.lifecycle.common import _refuse, _status_error, _transition


def access_request_cancel(*, access_request: AccessRequest, actor: User, own_only: bool = False) -> AccessRequest:
    """Withdraw the request. ``own_only``: the actor came with a CLI token, which cancels only their own
    (``rules.cancel_check``); anyone else's is refused on record as any refusal of the person."""
    # Once a grant has been claimed something may exist on an instance: that needs
    # completion (with cleanup), not cancellation.
    access_request.refresh_from_db()  # the rule reads the row as it is now
    untouched = not Grant.objects.filter(request=access_request).exclude(status=GrantStatus.PENDING).exists()
    check = rules.cancel_check(access_request, actor, grants_untouched=untouched, own_only=own_only)
    if not check:
        if check.code == "conflict" and access_request.status == RequestStatus.CANCELLED:
            return access_request
        raise _refuse(access_request, actor, action="cancel", check=check)
    with transaction.atomic():
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
            if access_request.status in LIVE_REQUEST_STATUSES:
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
