"""Pages of the Logbook per person and minute, read through the REST list or the review page (its
whole page and its htmx results): both run the same keyset query (``audit.selectors.logbook_page``),
so one count holds both. A script holding an auditor's session or CLI token could otherwise follow
the list's ``next`` links, or the page's "Older" links, through the whole Logbook, each page a query
under the same load as an export's, with no limit at all while the exports have one
(``audit.export_limits``). The review page does not poll: every page it reads is one a person asked for.

Counted in the database (``audit.throttle``), so every web process shares one count; a refused
page is on record once per person and window in the Logbook, then counted
(``audit.refusals.person_throttle_hit``), and counted in its fixed window only. Someone who may
not read the Logbook is refused by the view's permission first and uses up no count.

Other reads held per person and minute the same way (``person_reads_hit``, ``reads_refused``): the
recordings' pages, downloads and searches (``terminal.read_limits``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from audit.refusals import person_throttle_hit
from audit.throttle import ThrottleVerdict
from core.htmx import htmx_refusal, is_htmx

if TYPE_CHECKING:  # rest_framework.views reads the settings that name the default throttle: not at import
    from rest_framework.views import APIView

SCOPE = "logbook.pages"
WINDOW_SECONDS = 60


def too_many_reads(*, what: str, limit: int, wait: int) -> str:
    """What a person refused past a per-minute read limit is told: ``what`` is what was counted."""
    return f"Too many {what}: you have asked for more than {limit} in one minute. Wait {wait} seconds and try again."


def too_many_pages(*, limit: int, wait: int) -> str:
    return too_many_reads(what="Logbook pages", limit=limit, wait=wait)


def person_reads_hit(*, user: AbstractUser, scope: str, limit: int, reason: str) -> ThrottleVerdict:
    """Count one read by ``user`` in ``scope``; past ``limit`` in a minute it is refused, and on record
    (``api.throttled`` with ``reason``, once per person and refusal window, then a count)."""
    return person_throttle_hit(
        user=user, scope=scope, limit=limit, window_seconds=WINDOW_SECONDS, action="api.throttled", reason=reason
    )


def reads_refused(request: HttpRequest, *, message: str, heading: str, wait: int) -> HttpResponse:
    """The 429 of a page refused by a read limit: the ``429.html`` page saying ``message`` (to an htmx
    request the one-line refusal shown beside what asked), with Retry-After. Nothing was read."""
    if is_htmx(request):
        refused = htmx_refusal(message, status=429)
    else:
        context = {"message": message, "heading": heading, "outcome": "Nothing was read."}
        refused = render(request, "429.html", context, status=429)
    refused["Retry-After"] = str(wait)
    patch_vary_headers(refused, ["HX-Request"])
    return refused


def logbook_pages_hit(*, user: AbstractUser) -> ThrottleVerdict:
    """Count one page of the Logbook read by ``user`` (API or review page); past
    ``PASSPORT_LOGBOOK_PAGES_PER_MINUTE`` in a minute it is refused, and on record."""
    return person_reads_hit(
        user=user, scope=SCOPE, limit=settings.PASSPORT_LOGBOOK_PAGES_PER_MINUTE, reason="logbook_pages_per_minute"
    )


class LogbookPagesThrottled(APIException):
    """429 with Retry-After (DRF's handler sets it from ``wait``) and a message saying how long to wait."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "throttled"

    def __init__(self, *, limit: int, wait: int) -> None:
        super().__init__(detail=too_many_pages(limit=limit, wait=wait))
        self.wait = wait


class LogbookPageThrottle(BaseThrottle):
    """Counts every page of the Logbook a signed-in person reads through the API (``logbook_pages_hit``);
    past ``PASSPORT_LOGBOOK_PAGES_PER_MINUTE`` in a minute, 429 until the minute is over."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not isinstance(user, AbstractUser):
            return True  # nobody signed in: refused by the view's permissions, never read
        verdict = logbook_pages_hit(user=user)
        if verdict.allowed:
            return True
        # Raised here rather than through the view's ``throttled()``, so the message says what to do.
        raise LogbookPagesThrottled(limit=settings.PASSPORT_LOGBOOK_PAGES_PER_MINUTE, wait=verdict.retry_after)
