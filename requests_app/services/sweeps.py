"""Per-item isolation for periodic work (expiry, reconciliation, inventory, dispatch sweeps).

A sweep walks many items; one that raises must not stop the others, nor sort first again on
the next round and block the sweep for good. Each item runs in its own transaction; when it
fails, its ``SweepFailure`` row moves its next attempt on (exponential backoff, shared by every
worker process through the database) before the sweep goes on, the same way healthchecks'
``sendalerts`` moves a check on before re-raising. The Logbook hears once per failure streak
(``sweep.failed`` on the first failure, ``sweep.recovered`` when it works again), not on every
round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Generic, TypeVar

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import AwsAccount
from audit.services import logbook_append
from requests_app.models import SweepFailure

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
ERROR_MAX = 2000


class SweepItemFailed(Exception):
    """An expected failure of one item (a host that did not answer): its message says it all."""


@dataclass(frozen=True)
class SweepItem(Generic[T]):
    ok: bool
    value: T | None = None
    error: str = ""
    # True when this failure began a streak (the Logbook was told now, not on an earlier round).
    streak_began: bool = False


def sweep_backoff(failures: int) -> timedelta:
    """1, 2, 4 ... minutes after the first, second, third failure in a row; at most an hour."""
    return min(FIRST_BACKOFF * 2 ** max(failures - 1, 0), MAX_BACKOFF)


def sweep_backed_off(*, kind: str, now: object | None = None) -> set[str]:
    """Keys of this kind still waiting out their backoff: the sweep skips them this round."""
    return set(
        SweepFailure.objects.filter(kind=kind, next_attempt_at__gt=now or timezone.now()).values_list("key", flat=True)
    )


def _error_text(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, SweepItemFailed) else f"{type(exc).__name__}: {exc}"
    return text[:ERROR_MAX]


def sweep_failure_record(
    *,
    kind: str,
    key: str,
    error: str,
    account: AwsAccount | None = None,
    request_id: int | None = None,
    instance_ids: Sequence[str] = (),
) -> SweepFailure:
    """Count one more failure of this item and move its next attempt on; flag the start of a streak."""
    now = timezone.now()
    with transaction.atomic():
        row, created = SweepFailure.objects.select_for_update().get_or_create(
            kind=kind,
            key=key,
            defaults={
                "first_failed_at": now,
                "last_failed_at": now,
                "next_attempt_at": now + sweep_backoff(1),
                "last_error": error[:ERROR_MAX],
            },
        )
        if not created:
            SweepFailure.objects.filter(pk=row.pk).update(failures=F("failures") + 1)
            row.refresh_from_db()
            row.last_failed_at = now
            row.next_attempt_at = now + sweep_backoff(row.failures)
            row.last_error = error[:ERROR_MAX]
            row.save(update_fields=["last_failed_at", "next_attempt_at", "last_error"])
        else:
            logbook_append(
                action="sweep.failed",
                actor=None,
                account=account,
                request_id=request_id,
                instance_ids=instance_ids,
                detail={"kind": kind, "key": key, "error": error[:ERROR_MAX], "next_attempt_at": row.next_attempt_at},
            )
    return row


def sweep_failure_clear(
    *,
    kind: str,
    key: str,
    account: AwsAccount | None = None,
    request_id: int | None = None,
    instance_ids: Sequence[str] = (),
) -> bool:
    """The item worked: end its failure streak (and say so in the Logbook) if it had one."""
    with transaction.atomic():
        rows = list(SweepFailure.objects.filter(kind=kind, key=key).values_list("failures", flat=True))
        if not rows or not SweepFailure.objects.filter(kind=kind, key=key).delete()[0]:
            return False
        logbook_append(
            action="sweep.recovered",
            actor=None,
            account=account,
            request_id=request_id,
            instance_ids=instance_ids,
            detail={"kind": kind, "key": key, "failures": rows[0]},
        )
    return True


def sweep_run(
    *,
    kind: str,
    key: str,
    work: Callable[[], T],
    account: AwsAccount | None = None,
    request_id: int | None = None,
    instance_ids: Sequence[str] = (),
    atomic: bool = True,
    clear: bool = True,
) -> SweepItem[T]:
    """Run one item's work (in its own transaction, unless ``atomic`` is False); a failure is
    recorded, never raised to the sweep. ``clear=False``: the caller knows the item had no
    failure streak, so there is none to end (a query fewer per item).

    Work that acts on hosts passes ``atomic=False``: what it did there and wrote to the
    Logbook must stay written even when a later step of the same item fails.
    """
    try:
        if atomic:
            with transaction.atomic():
                value = work()
        else:
            value = work()
    except Exception as exc:  # any failure of one item must leave the others running
        error = _error_text(exc)
        logger.exception("sweep %s: item %s failed", kind, key)
        try:
            row = sweep_failure_record(
                kind=kind, key=key, error=error, account=account, request_id=request_id, instance_ids=instance_ids
            )
        except Exception:  # the database itself is failing; the next round tries again
            logger.exception("sweep %s: could not record the failure of %s", kind, key)
            return SweepItem(ok=False, error=error)
        return SweepItem(ok=False, error=error, streak_began=row.failures == 1)
    if clear:
        sweep_failure_clear(kind=kind, key=key, account=account, request_id=request_id, instance_ids=instance_ids)
    return SweepItem(ok=True, value=value)


def sweep_each(*, kind: str, ids: Iterable[int], work: Callable[[int], object]) -> int:
    """Run ``work`` for every id not backing off, each isolated; returns how many succeeded."""
    skip = sweep_backed_off(kind=kind)
    done = 0
    for object_id in ids:
        if str(object_id) in skip:
            continue
        done += int(sweep_run(kind=kind, key=str(object_id), work=partial(work, object_id)).ok)
    return done
