"""Logbook exports per person and hour: each export reads the whole filtered Logbook, so a loop of
them (a script holding an auditor's session, or a stolen one) would keep the database busy.

Counted in the database (``audit.throttle``), so every web process shares one count, as for the
per-person limit on changes (``accounts.api_limits``); a refused export is on record the same way,
once per person and window in the Logbook, then counted (``audit.refusals``). An export that is
refused is counted in its fixed window only: asking again never lengthens the wait.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser

from audit.refusals import logbook_append_aggregated
from audit.throttle import ThrottleVerdict, throttle_hit

SCOPE = "logbook.exports"
WINDOW_SECONDS = 3600


def too_many_exports(*, limit: int, wait: int) -> str:
    return (
        f"Too many Logbook exports: you have asked for more than {limit} in one hour. "
        f"Wait {wait} seconds and try again."
    )


def logbook_export_hit(*, user: AbstractUser) -> ThrottleVerdict:
    """Count one export by ``user``; past ``PASSPORT_LOGBOOK_EXPORTS_PER_HOUR`` it is refused, and on record."""
    limit = settings.PASSPORT_LOGBOOK_EXPORTS_PER_HOUR
    verdict = throttle_hit(scope=SCOPE, key=str(user.pk), limit=limit, window_seconds=WINDOW_SECONDS)
    if not verdict.allowed:
        logbook_append_aggregated(
            action="api.throttled",
            source=f"user:{user.pk}",
            reason="logbook_exports_per_hour",
            actor=user,
            detail={"limit": limit, "window_seconds": WINDOW_SECONDS},
            capped=False,
        )
    return verdict
