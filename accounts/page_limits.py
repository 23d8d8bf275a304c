"""The per-person limit on changes (``accounts.api_limits``) for the portal's pages.

A form posted in a loop (a script holding a browser's session cookie) writes as the API does: a
request and its approvers' mails, an approval, a revealed password, each a Logbook entry under the
chain's head lock. So every page view that changes something counts on the API's counter, one
count per person for the API and the pages together, and past the limit answers 429 with
Retry-After and a page that says how long to wait (for htmx, that one line), changing nothing.

What only takes access away (revoking a CLI sign-in, completing or cancelling a request, ending a
session) is never held back by that count: whoever holds a person's stolen CLI token can keep
that person over the limit, and the person must still be able to shut them out. Revoking goes
without ``person_write_limited`` (it writes only when there is a sign-in to revoke); completing and
cancelling by someone who may are spared by ``person_write_limited_unless`` (a second one writes
nothing; an attempt the person may not make writes a refusal, so it counts); ending sessions
counts apart (``session_ends_limited``), since each ending of a still open session is an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.api_limits import SCOPE, SESSION_ENDS_SCOPE, person_write_hit, too_many_changes
from accounts.models import User
from core.htmx import htmx_refusal, is_htmx

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

View = TypeVar("View", bound=Callable[..., HttpResponse])


def person_write_limited(view: View) -> View:
    """Hold a page view's changes (any method but GET, HEAD, OPTIONS) by a signed-in person to
    ``PASSPORT_API_WRITES_PER_MINUTE``. Put it under ``login_required``."""
    return _limited(view, SCOPE)


def session_ends_limited(view: View) -> View:
    """``person_write_limited`` on a count of its own (``SESSION_ENDS_SCOPE``), for ending live
    sessions: only taking access away, never held back by the API's count a stolen token can fill."""
    return _limited(view, SESSION_ENDS_SCOPE)


def _limited(view: View, scope: str) -> View:
    @wraps(view)
    def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if request.method not in SAFE_METHODS and isinstance(user, User):
            verdict = person_write_hit(user=user, scope=scope)
            if not verdict.allowed:
                message = too_many_changes(limit=settings.PASSPORT_API_WRITES_PER_MINUTE, wait=verdict.retry_after)
                if is_htmx(request):
                    response = htmx_refusal(message, status=429)  # the page shows it beside the button
                else:
                    response = render(request, "429.html", {"message": message}, status=429)
                response["Retry-After"] = str(verdict.retry_after)
                return response
        return view(request, *args, **kwargs)

    return limited  # type: ignore[return-value]


def person_write_limited_unless(
    only_takes_access_away: Callable[[HttpRequest, dict[str, Any]], bool],
) -> Callable[[View], View]:
    """``person_write_limited`` for a view that also does what only takes access away: a change for
    which ``only_takes_access_away(request, kwargs)`` (``kwargs``: the view's URL arguments) holds
    is neither counted nor refused."""

    def decorate(view: View) -> View:
        held = person_write_limited(view)

        @wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if only_takes_access_away(request, kwargs):
                return view(request, *args, **kwargs)
            return held(request, *args, **kwargs)

        return limited  # type: ignore[return-value]

    return decorate
