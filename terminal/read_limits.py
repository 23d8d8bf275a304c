"""Reads of recordings per person and minute: the player's page, the cast download and the
recordings search. Each is a GET that reads a whole recording back (the page hashes it, the
download hashes and sends it, a text search scans every transcript visible) and appends
``recording.viewed`` to the Logbook under its head lock; a loop of them by one session would
otherwise be limited by nothing (``accounts.page_limits`` holds changes, not reads).

One count for the three (``PASSPORT_RECORDING_READS_PER_MINUTE``), in the database
(``audit.list_limits.person_reads_hit``): every web process shares it. Past it the view is not
run: 429 with Retry-After and a message saying how long to wait, no ``recording.viewed`` entry,
and ``api.throttled`` (reason ``recording_reads_per_minute``) once per person and window, then a count.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from audit.list_limits import person_reads_hit, reads_refused, too_many_reads

SCOPE = "recording.reads"
REASON = "recording_reads_per_minute"
WHAT = "recording reads (recordings played, downloaded or searched)"

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def recording_reads_limited(view: View) -> View:
    """Count each request of a signed-in person to ``view`` against ``PASSPORT_RECORDING_READS_PER_MINUTE``;
    past it, 429 and the view is not run. Put it under ``login_required``."""

    @wraps(view)
    def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if isinstance(user, AbstractUser):
            limit = settings.PASSPORT_RECORDING_READS_PER_MINUTE
            verdict = person_reads_hit(user=user, scope=SCOPE, limit=limit, reason=REASON)
            if not verdict.allowed:
                message = too_many_reads(what=WHAT, limit=limit, wait=verdict.retry_after)
                return reads_refused(
                    request, message=message, heading="Too many recording reads", wait=verdict.retry_after
                )
        return view(request, *args, **kwargs)

    return limited  # type: ignore[return-value]
