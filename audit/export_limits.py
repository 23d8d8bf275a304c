"""Logbook exports per person and hour: each export reads the whole filtered Logbook, so a loop of
them (a script holding an auditor's session, or a stolen one) would keep the database busy.

Counted in the database (``audit.throttle``), so every web process shares one count, as for the
per-person limit on changes (``accounts.api_limits``); a refused export is on record the same way,
once per person and window in the Logbook, then counted (``audit.refusals.person_throttle_hit``).
An export that is refused is counted in its fixed window only: asking again never lengthens the wait.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser

from audit.refusals import person_throttle_hit
from audit.throttle import ThrottleVerdict

SCOPE = "logbook.exports"
WINDOW_SECONDS = 3600


def too_many_exports(*, limit: int, wait: int) -> str:
    return (
        f"Too many Logbook exports: you have asked for more than {limit} in one hour. "
        f"Wait {wait} seconds and try again."
    )


def logbook_export_hit(*, user: AbstractUser) -> ThrottleVerdict:
    """Count one export by ``user``; past ``PASSPORT_LOGBOOK_EXPORTS_PER_HOUR`` it is refused, and on record."""
    return person_throttle_hit(
        user=user,
        scope=SCOPE,
        limit=settings.PASSPORT_LOGBOOK_EXPORTS_PER_HOUR,
        window_seconds=WINDOW_SECONDS,
        action="api.throttled",
        reason="logbook_exports_per_hour",
    )
