"""Expiry: a request whose time is up ends, and the sweep that ends every due one, each on its own."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.db import transaction
from django.utils import timezone

from requests_app.models import AccessRequest, EndReason, RequestStatus, SweepFailure
from requests_app.services.lifecycle.ending import _begin_ending
from requests_app.services.sweeps import sweep_backed_off, sweep_run


def access_request_expire(*, access_request: AccessRequest) -> bool:
    """End a request whose time is up. Returns False if it was not due (or already ending)."""
    with transaction.atomic():
        if access_request.expires_at is None or access_request.expires_at > timezone.now():
            return False
        return _begin_ending(access_request, actor=None, end_reason=EndReason.EXPIRED, action="request.expiring")


def due_for_expiry(*, now: datetime | None = None) -> list[int]:
    """Active requests past their end, oldest first, leaving out those backing off after a failure.

    Without that exclusion a request that keeps failing would sort first on every round and,
    with enough of them, fill the batch so nothing behind them ever expired.
    """
    now = now or timezone.now()
    backing_off = [int(key) for key in sweep_backed_off(kind=SweepFailure.Kind.EXPIRE, now=now)]
    return list(
        AccessRequest.objects.filter(status=RequestStatus.ACTIVE, expires_at__lte=now)
        .exclude(pk__in=backing_off)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:500]
    )


def _expire_by_id(request_id: int) -> bool:
    return access_request_expire(access_request=AccessRequest.objects.select_related("account").get(pk=request_id))


def access_requests_expire_due() -> int:
    """The expiry sweep: end every due request, each on its own, so one that fails blocks none behind it."""
    expired = 0
    for request_id in due_for_expiry():
        item = sweep_run(
            kind=SweepFailure.Kind.EXPIRE,
            key=str(request_id),
            request_id=request_id,
            work=partial(_expire_by_id, request_id),
        )
        expired += int(bool(item.value))
    return expired
