"""Project-wide response rules that belong to no single view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from core.connections import connections_hand_back

# Set on a request that signed its person out (user_logged_out): its answer clears the browser's copies.
SIGNED_OUT = "passport_signed_out"
CLEAR_SITE_DATA = '"cache", "storage"'


class NoStoreMiddleware:
    """Nothing the API answers, nor any page a signed-in person is shown, is kept by a cache.

    The API's answers are personal and some are secrets (Windows passwords, certificates, Session
    Manager tokens, AWS credentials): ``no-store``. A page for a signed-in person holds their
    CSRF token and other people's names and reasons (the approvals queue and a request's status,
    polled every few seconds): ``private, no-store``, so neither a shared proxy nor the browser's
    disk keeps it. A rule for every response rather than a line each view has to remember; a view
    that sets its own Cache-Control keeps it. Static files, ``/healthz``, ``/readyz`` and
    ``/metrics`` are answered by middleware further out and never come here.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.has_header("Cache-Control"):
            return response
        if request.path.startswith("/api/"):
            response["Cache-Control"] = "no-store"
        elif getattr(request, "user", None) is not None and request.user.is_authenticated:
            response["Cache-Control"] = "private, no-store"
        return response


@receiver(user_logged_out, dispatch_uid="passport-clear-site-data-on-sign-out")
def _signed_out(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    if request is not None:  # None: another of the person's sessions, ended from elsewhere
        setattr(request, SIGNED_OUT, True)


class ClearSiteDataOnSignOutMiddleware:
    """A sign-out (the person's own, allauth's; the identity provider's single logout; a session past
    its lifetime) answers with ``Clear-Site-Data: "cache", "storage"``: whatever a page left in this
    browser for this site (its HTTP cache, localStorage and sessionStorage, htmx's history among
    them) goes with the session, on the machine's disk included. The cookies are left alone: the
    session's is already ended, and the CSRF cookie the sign-in page needs stays.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(request, SIGNED_OUT, False):
            response["Clear-Site-Data"] = CLEAR_SITE_DATA
        return response


class StreamingHandsConnectionBackMiddleware:
    """A streamed response (a recording's download, the Logbook's export, the CLI's release) gives its
    request's database connection back before its first byte is sent, not at ``request_finished``,
    after its last one: with the pool (production), a slow client would otherwise keep one of the
    process's few connections for the whole download, and enough of them starve every other request.

    First in MIDDLEWARE, so it sees the response last, in the request's own thread, once nothing
    else will read the database for it (a body that reads more, as the Logbook's export does, takes
    a connection for each part and hands it back: ``audit/exports.py``). Without the pool a
    connection younger than CONN_MAX_AGE is kept, as before (``core/connections.py``).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.streaming:
            connections_hand_back()
        return response
