"""Expiry: a request whose time is up ends, and the sweep that ends every due one, each on its own.

The sweep claims due rows with ``SKIP LOCKED`` under a lock timeout and the workers fan them
out in batches on the ``revocation`` queue (workers.tasks), which provisioning never fills.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import connection, transaction
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


def _lock_timeout() -> None:
    """Inside a transaction: wait at most PASSPORT_EXPIRY_LOCK_TIMEOUT_MS for any lock, then fail.
    PostgreSQL only: SQLite (the demo) has no row locks to wait for and no ``set_config``."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{settings.PASSPORT_EXPIRY_LOCK_TIMEOUT_MS}ms"])


def access_requests_claim_due(*, limit: int = 500) -> list[int]:
    """The sweep's read: due requests, oldest first, ``FOR UPDATE SKIP LOCKED`` under a lock timeout.

    A row another transaction holds (an extension being saved, a batch expiring it right now)
    is skipped, not waited for: it is someone else's or the next round's. The lock timeout
    bounds any other wait (a table lock during a migration) so no sweep holds a worker long.
    """
    now = timezone.now()
    backing_off = [int(key) for key in sweep_backed_off(kind=SweepFailure.Kind.EXPIRE, now=now)]
    with transaction.atomic():
        _lock_timeout()
        return list(
            AccessRequest.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=RequestStatus.ACTIVE, expires_at__lte=now)
            .exclude(pk__in=backing_off)
            .order_by("expires_at")
            .values_list("pk", flat=True)[:limit]
        )


def _expire_by_id(request_id: int) -> bool:
    # Runs in sweep_run's transaction. A row locked elsewhere is left for the next round.
    _lock_timeout()
    access_request = (
        AccessRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("account")
        .filter(pk=request_id)
        .first()
    )
    if access_request is None:
        return False
    return access_request_expire(access_request=access_request)


def access_requests_expire(*, request_ids: list[int]) -> int:
    """Expire these requests (one batch of the sweep's fan-out), each on its own, so one that fails
    blocks none behind it; returns how many were expired."""
    expired = 0
    for request_id in request_ids:
        item = sweep_run(
            kind=SweepFailure.Kind.EXPIRE,
            key=str(request_id),
            request_id=request_id,
            work=partial(_expire_by_id, request_id),
        )
        expired += int(bool(item.value))
    return expired


def access_requests_expire_due() -> int:
    """The whole sweep in this process: claim the due requests and expire them (no fan-out)."""
    return access_requests_expire(request_ids=access_requests_claim_due())
