"""Project-wide response rules that belong to no single view."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class ApiNoStoreMiddleware:
    """Nothing the API answers is kept by a browser or proxy cache.

    Its answers are personal and some are secrets (Windows passwords, certificates, Session
    Manager tokens, AWS credentials), so ``Cache-Control: no-store`` is the rule for the
    whole API rather than a line each view has to remember. A view that sets its own
    Cache-Control keeps it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/api/") and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response
