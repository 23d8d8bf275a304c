"""Expiry: a request whose time is up ends, and the sweep that ends every due one, each on its own.

Two kinds are due: an active request past its end, and a request still pending (waiting for one
or more approvals) ``PASSPORT_PENDING_REQUEST_HOURS`` after it was made, which expires unapproved.
The active ones come first. The sweep claims due rows with ``SKIP LOCKED`` under a lock timeout and
the workers fan them out in batches on the ``revocation`` queue (workers.tasks), which provisioning
never fills. An approval holds the pending row's lock until it commits, so the sweep skips a request
being approved, and finds it approved on its next round.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.services import logbook_append, logbook_batch
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, RequestStatus, SweepFailure
from requests_app.notifications import Kind, notification_enqueue
from requests_app.services.lifecycle.common import _instance_ids_of, _schedule_cleanup
from requests_app.services.lifecycle.ending import _begin_ending, _begin_expiring_together, _grants_end
from requests_app.services.sweeps import sweep_backed_off, sweep_run

logger = logging.getLogger(__name__)


def access_request_expire(*, access_request: AccessRequest) -> bool:
    """End a request whose time is up: active past its end, or pending past its wait for approval.
    Returns False if it was not due (or already ending).

    Its own transaction, or part of the caller's with no savepoint of its own (the sweep's batch
    gives each request one already)."""
    with transaction.atomic(savepoint=False):
        if access_request.status == RequestStatus.PENDING:
            expired = bool(_expire_unapproved_together([access_request.pk]))
            access_request.refresh_from_db()
            return expired
        if access_request.expires_at is None or access_request.expires_at > timezone.now():
            return False
        return _begin_ending(access_request, actor=None, end_reason=EndReason.EXPIRED, action="request.expiring")


def _unapproved_since(now: datetime) -> datetime:
    """A request still pending that was made at or before this has waited too long for approval."""
    return now - timedelta(hours=settings.PASSPORT_PENDING_REQUEST_HOURS)


def _due(rows: QuerySet[AccessRequest], *, now: datetime, limit: int) -> list[int]:
    """Due requests of ``rows``: active past their end first (oldest end first), then pending past
    their wait (oldest first), leaving out those backing off after a failure.

    Without that exclusion a request that keeps failing would sort first on every round and,
    with enough of them, fill the batch so nothing behind them ever expired.
    """
    backing_off = [int(key) for key in sweep_backed_off(kind=SweepFailure.Kind.EXPIRE, now=now)]
    rows = rows.exclude(pk__in=backing_off)
    active = list(
        rows.filter(status=RequestStatus.ACTIVE, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    if len(active) >= limit:
        return active
    unapproved = (
        rows.filter(status=RequestStatus.PENDING, created_at__lte=_unapproved_since(now))
        .order_by("created_at")
        .values_list("pk", flat=True)[: limit - len(active)]
    )
    return active + list(unapproved)


def due_for_expiry(*, now: datetime | None = None) -> list[int]:
    """Requests due to expire (``_due``): active past their end, then pending past their wait."""
    return _due(AccessRequest.objects.all(), now=now or timezone.now(), limit=500)


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
    with transaction.atomic():
        _lock_timeout()
        return _due(
            AccessRequest.objects.select_for_update(skip_locked=True, of=("self",)), now=timezone.now(), limit=limit
        )


def _expire_unapproved_together(request_ids: list[int]) -> list[int]:
    """Expire those of these requests still pending past their wait for approval, and not locked by
    another transaction (an approval being saved: it wins), in one set of statements; their ids.

    Nothing was handed out for a pending request: its grants end as never provisioned and it is
    ``expired`` at once. Should a grant have been touched all the same, it is removed as an ended
    request's is (``completing`` until then). ``request.expired`` (or ``request.expiring``) in the
    Logbook says it was never approved, and the requester is told. Call it in a savepoint.
    """
    now = timezone.now()
    waited_since = _unapproved_since(now)
    locked = dict(
        AccessRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=request_ids, status=RequestStatus.PENDING, created_at__lte=waited_since)
        .values_list("pk", "account__account_id")
    )
    ids = [request_id for request_id in request_ids if request_id in locked]
    if not ids:
        return []
    moved = AccessRequest.objects.filter(pk__in=ids, status=RequestStatus.PENDING).update(
        status=RequestStatus.COMPLETING, end_reason=EndReason.EXPIRED, ended_at=now, ended_by=None
    )
    if moved != len(ids):
        raise RuntimeError(f"{moved} of {len(ids)} locked pending requests moved to completing")
    _grants_end(ids, now)
    _schedule_cleanup(ids)
    left = set(
        Grant.objects.filter(request_id__in=ids)
        .exclude(status=GrantStatus.REMOVED)
        .values_list("request_id", flat=True)
    )
    settled = [request_id for request_id in ids if request_id not in left]
    AccessRequest.objects.filter(pk__in=settled, status=RequestStatus.COMPLETING).update(status=RequestStatus.EXPIRED)
    instance_ids = _instance_ids_of(ids)
    detail = {
        "end_reason": EndReason.EXPIRED,
        "reason": "not approved in time",
        "waited_hours": settings.PASSPORT_PENDING_REQUEST_HOURS,
    }
    for request_id in ids:
        logbook_append(
            action="request.expired" if request_id not in left else "request.expiring",
            actor=None,
            account=locked[request_id],
            request_id=request_id,
            instance_ids=instance_ids.get(request_id, []),
            detail=detail,
        )
        notification_enqueue(kind=Kind.EXPIRED_UNAPPROVED, request_id=request_id)
    return ids


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
                    expired += len(_expire_unapproved_together(together))
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
