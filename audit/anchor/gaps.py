"""Stretches of time with no checkpoint in the bucket: **checkpoint-gap**.

Every checkpoint promises, signed, that the next one follows within ``next_within_seconds``
(PASSPORT_LOGBOOK_CHECKPOINT_SECONDS when it was written): the periodic task writes one every
interval, a heartbeat when the head has not moved (``checkpoints``). So between two checkpoints,
in the order of their signed ``written_at``, and between the newest one and now, no more than
that promise plus the grace (PASSPORT_LOGBOOK_CHECKPOINT_GRACE_MINUTES) may pass. A longer
stretch means checkpointing stopped (the scheduler or the workers down, or kept from sending);
entries written and removed in it (the head moved back, the id sequence reset) would leave no
other trace, since the chain that remains is consistent and every checkpoint still agrees with it.

Checkpoints written before the promise (no ``next_within_seconds``: the head was then signed
only when it moved) promise nothing, so an install that has just begun heartbeats, or has no
checkpoint yet, has no gap to report.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from audit.anchor.coverage import Checkpoint
from audit.integrity import ChainProblem
from audit.services import canonical_time


def checkpoint_gaps(checkpoints: list[Checkpoint], *, now: datetime) -> list[ChainProblem]:
    """One problem per stretch longer than a checkpoint's promise plus the grace."""
    grace = timedelta(minutes=settings.PASSPORT_LOGBOOK_CHECKPOINT_GRACE_MINUTES)
    ordered = sorted(checkpoints, key=lambda checkpoint: checkpoint.written_at)
    problems: list[ChainProblem] = []
    for index, before in enumerate(ordered):
        after = ordered[index + 1] if index + 1 < len(ordered) else None
        if before.next_within is None:
            continue
        until = after.written_at if after is not None else now
        allowed = timedelta(seconds=before.next_within) + grace
        if until - before.written_at <= allowed:
            continue
        minutes = int((until - before.written_at).total_seconds() // 60)
        stretch = (
            f"between {canonical_time(before.written_at)} and {canonical_time(until)} ({minutes} minutes)"
            if after is not None
            else f"since {canonical_time(before.written_at)} ({minutes} minutes ago)"
        )
        problems.append(
            ChainProblem(
                "checkpoint-gap",
                [before.entry_id] + ([after.entry_id] if after is not None else []),
                f"No checkpoint was written {stretch}, though each promises the next within {before.next_within} s "
                f"(and {settings.PASSPORT_LOGBOOK_CHECKPOINT_GRACE_MINUTES} minutes' grace): checkpointing stopped "
                "or was kept from the bucket; entries written and removed meanwhile would leave no other trace.",
                period=(before.written_at, until),
            )
        )
    return problems
