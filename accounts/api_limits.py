"""Changes per signed-in person and minute through the API: the limit on how fast one person's
browser session or CLI token can make the portal write.

Nearly every change the API makes (a request asked, approved, refused, a session started, a
certificate issued) is a Logbook entry, and each entry takes the chain's head lock that
approvals, provisioning and expiry also wait on. A person clicking, or the CLI connecting to a
few hosts, stays far below ``PASSPORT_API_WRITES_PER_MINUTE``; a loop does not. Counted in the
database (``audit.throttle``), so every web process shares one count, as for the anonymous
endpoints (``accounts.address_limits``). Reads are not counted.

It is the project's default DRF throttle (``REST_FRAMEWORK``), so a new endpoint that writes is
covered without remembering to; the endpoints anyone may call keep their own per-address throttles.
The portal's pages that change something count on the same counter (``accounts.page_limits``).

A call that only takes access away (``passport auth logout``; completing or cancelling a request
by someone who may) is neither counted nor refused: its view's ``only_takes_access_away(request)``
says so. Someone holding a person's stolen CLI token can keep that person over the limit, and the
person must still be able to shut them out. Such a call writes to the Logbook only when something
changes (a second completion writes nothing); an attempt the person may not make is refused with
an entry, so it is counted as any change. A refused change is counted in its fixed window only:
a flood never lengthens the wait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.models import User
from audit.refusals import person_throttle_hit
from audit.throttle import ThrottleVerdict

if TYPE_CHECKING:  # rest_framework.views reads the settings that name this module: not at import
    from rest_framework.views import APIView

SCOPE = "api.writes"
# Ending live sessions (a page only): a count of its own, which no flood through the API reaches,
# kept because each ending writes a Logbook entry while the session is still open.
SESSION_ENDS_SCOPE = "terminal.session_ends"
WINDOW_SECONDS = 60


def too_many_changes(*, limit: int, wait: int) -> str:
    return f"Too many changes: you have sent more than {limit} in one minute. Wait {wait} seconds and try again."


def person_write_hit(*, user: User, scope: str = SCOPE) -> ThrottleVerdict:
    """Count one change by ``user`` (API or page); a refused one is on record, once per person and
    window in the Logbook, then counted (audit.refusals): the flood adds no entries."""
    return person_throttle_hit(
        user=user,
        scope=scope,
        limit=settings.PASSPORT_API_WRITES_PER_MINUTE,
        window_seconds=WINDOW_SECONDS,
        action="api.throttled",
        reason="writes_per_minute" if scope == SCOPE else "session_ends_per_minute",
    )


class PersonThrottled(APIException):
    """429 with Retry-After (DRF's handler sets it from ``wait``) and a message that says what to do."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "throttled"

    def __init__(self, *, limit: int, wait: int) -> None:
        super().__init__(detail=too_many_changes(limit=limit, wait=wait))
        self.wait = wait


class PersonWriteThrottle(BaseThrottle):
    """Counts each change (a method other than GET, HEAD, OPTIONS) by its signed-in person, but
    none that only takes access away (the view's ``only_takes_access_away(request)``)."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        user = request.user
        if request.method in SAFE_METHODS or not isinstance(user, User):
            return True
        ends_access = getattr(view, "only_takes_access_away", None)
        if ends_access is not None and ends_access(request):
            return True
        verdict = person_write_hit(user=user)
        if verdict.allowed:
            return True
        # Raised here rather than answered by the view's ``throttled()``, so the message is this one on every view.
        raise PersonThrottled(limit=settings.PASSPORT_API_WRITES_PER_MINUTE, wait=verdict.retry_after)
