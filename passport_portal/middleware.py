"""Project-wide response rules that belong to no single view."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


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
