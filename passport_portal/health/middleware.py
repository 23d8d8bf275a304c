"""Answers /healthz, /readyz and /metrics first, before any other middleware.

A load balancer probes by address (no allowed Host) over plain http (no https redirect) and has
no session or CSRF cookie; Prometheus scrapes the same way with its token. Nothing else on
those paths runs: no session is read or saved, so probes leave no trace and cost no more than
their own check. Other methods than GET and HEAD are refused.
"""

from __future__ import annotations

from collections.abc import Callable

from csp.utils import build_policy
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from passport_portal.health import views

ENDPOINTS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": views.healthz,
    "/readyz": views.readyz,
    "/metrics": views.metrics,
}


class HealthEndpointsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = ENDPOINTS.get(request.path_info)
        if view is None:
            return self.get_response(request)
        response = view(request) if request.method in ("GET", "HEAD") else HttpResponseNotAllowed(["GET", "HEAD"])
        # The site's policy, as every other answer has it (this one runs before django-csp's).
        response["Content-Security-Policy"] = build_policy()
        if request.method == "HEAD":
            response.content = b""
        return response
