"""Fixed-window attempt counters in the database, shared by every process.

Django's cache is per process in this deployment, so a limit kept there would multiply
by the number of web processes; a row per (scope, key, window) counted with a
conditional UPDATE holds on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import ThrottleWindow


@dataclass(frozen=True)
class ThrottleVerdict:
    allowed: bool
    count: int  # attempts in this window so far, this one included
    window_start: datetime
    retry_after: int  # seconds until the window ends


def window_start_for(moment: datetime, seconds: int) -> datetime:
    """The start of the fixed window of ``seconds`` holding ``moment``; windows align to the epoch."""
    seconds = max(seconds, 1)
    return datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, UTC)


def throttle_hit(*, scope: str, key: str, limit: int, window_seconds: int) -> ThrottleVerdict:
    """Count one attempt; it is allowed while the window's count stays within ``limit``.

    The attempt is counted before it is judged, so concurrent attempts cannot all slip in
    under the limit; a caller whose attempt turned out fine may give it back
    (``throttle_refund``).
    """
    now = timezone.now()
    start = window_start_for(now, window_seconds)
    key = key[:128]
    rows = ThrottleWindow.objects.filter(scope=scope, key=key, window_start=start)
    if not rows.update(count=F("count") + 1):
        try:
            with transaction.atomic():
                ThrottleWindow.objects.create(
                    scope=scope,
                    key=key,
                    window_start=start,
                    expires_at=start + timedelta(seconds=window_seconds),
                    count=1,
                )
        except IntegrityError:
            # Another process opened this window a moment ago: count this attempt there.
            rows.update(count=F("count") + 1)
    count = rows.values_list("count", flat=True).first() or 1
    retry_after = max(1, int((start + timedelta(seconds=window_seconds) - now).total_seconds()) + 1)
    return ThrottleVerdict(allowed=count <= limit, count=count, window_start=start, retry_after=retry_after)


def throttle_refund(*, scope: str, key: str, verdict: ThrottleVerdict) -> None:
    """Give back an attempt that succeeded, so only failures use up the limit."""
    ThrottleWindow.objects.filter(scope=scope, key=key[:128], window_start=verdict.window_start, count__gt=0).update(
        count=F("count") - 1
    )


def throttle_windows_purge(*, now: datetime | None = None) -> int:
    """Delete the counters of windows that have ended."""
    deleted, _ = ThrottleWindow.objects.filter(expires_at__lt=now or timezone.now()).delete()
    return deleted
