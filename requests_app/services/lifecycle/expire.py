"""Expiry: a request whose time is up ends, and the sweep that ends every due one, each on its own.

The sweep claims due rows with ``SKIP LOCKED`` under a lock timeout and the workers fan them
out in batches on the ``revocation`` queue (workers.tasks), which provisioning never fills.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.services import logbook_batch
from requests_app.models import AccessRequest, EndReason, RequestStatus, SweepFailure
from requests_app.services.lifecycle.ending import _begin_ending, _begin_expiring_together
from requests_app.services.sweeps import sweep_backed_off, sweep_run

logger = logging.getLogger(__name__)


def access_request_expire(*, access_request: AccessRequest) -> bool:
    """End a request whose time is up. Returns False if it was not due (or already ending).

    Its own transaction, or part of the caller's with no savepoint of its own (the sweep's batch
    gives each request one already)."""
    with transaction.atomic(savepoint=False):
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


def _expire_by_id(request_id: int, queued: list[Any]) -> bool:
    # Runs in its own savepoint of the batch's transaction (sweep_run), under the batch's lock
    # timeout. A row locked elsewhere is left for the next round. Should this request fail, its
    # Logbook entries are dropped from the batch's queue with the rest of what it did.
    mark = len(queued)
    try:
        access_request = (
            AccessRequest.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("account")
            .filter(pk=request_id)
            .first()
        )
        if access_request is None:
            return False
        return access_request_expire(access_request=access_request)
    except BaseException:
        del queued[mark:]
        raise


def access_requests_expire(*, request_ids: list[int]) -> int:
    """Expire these requests (one batch of the sweep's fan-out); returns how many were expired.

    One transaction for the batch. All of them together first (``_begin_expiring_together``: a
    statement per step for the batch, in a savepoint); should that fail, each on its own, in a
    savepoint of its own, so one that fails blocks none behind it (its failure is recorded, the
    others commit). A request with a failure streak goes on its own at once (its streak ends
    there). The batch's Logbook entries are appended together at its end (``logbook_batch``):
    the head lock, which serialises every appender, is taken once per batch, just before commit.
    """
    kind = SweepFailure.Kind.EXPIRE
    keys = {request_id: str(request_id) for request_id in request_ids}
    expired = 0
    with transaction.atomic():
        _lock_timeout()
        failing = set(SweepFailure.objects.filter(kind=kind, key__in=keys.values()).values_list("key", flat=True))
        alone = [request_id for request_id in request_ids if keys[request_id] in failing]
        together = [request_id for request_id in request_ids if keys[request_id] not in failing]
        with logbook_batch() as queued:
            mark = len(queued)
            try:
                with transaction.atomic():
                    expired += len(_begin_expiring_together(together))
            except Exception:
                logger.warning("expiry: a batch of %d failed together; each on its own", len(together), exc_info=True)
                del queued[mark:]
                alone = request_ids
            for request_id in alone:
                item = sweep_run(
                    kind=kind,
                    key=keys[request_id],
                    request_id=request_id,
                    work=partial(_expire_by_id, request_id, queued),
                    clear=keys[request_id] in failing,
                )
                expired += int(bool(item.value))
    return expired


def access_requests_expire_due() -> int:
    """The whole sweep in this process: claim the due requests and expire them, batch by batch
    (no fan-out)."""
    request_ids = access_requests_claim_due()
    size = max(settings.PASSPORT_EXPIRY_BATCH, 1)
    return sum(
        access_requests_expire(request_ids=request_ids[start : start + size])
        for start in range(0, len(request_ids), size)
    )
