"""/healthz, /readyz and /metrics: for load balancers and Prometheus, not for people.

No session, no login, no CSRF: they change nothing. The middleware (``middleware.py``) answers
them before the host check and the https redirect; the URL patterns name them for the route
tests and answer if the middleware is ever left out.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from passport_portal.health.checks import readiness_cache
from passport_portal.health.metrics import metrics_registry


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up and answering. Touches nothing else, so a database outage never
    makes a supervisor restart every web process."""
    return _no_store(JsonResponse({"status": "ok"}))


def readyz(request: HttpRequest) -> HttpResponse:
    """200 when every configured dependency answers, else 503 naming the ones that failed."""
    results = readiness_cache.results()
    failed = [result.name for result in results if result.failed]
    body = {
        "status": "unready" if failed else "ready",
        "failed": failed,
        "checks": {result.name: result.as_json() for result in results},
    }
    return _no_store(JsonResponse(body, status=503 if failed else 200))


def _is_loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", ""))).is_loopback
    except ValueError:
        return False


def metrics_allowed(request: HttpRequest) -> tuple[bool, int]:
    """Whether this caller may read the metrics, and the status to refuse with."""
    token = str(settings.PASSPORT_METRICS_TOKEN)
    if token:
        scheme, _, given = str(request.headers.get("Authorization", "")).partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
        return ok, 401
    # No token: never in production; elsewhere only the machine itself.
    return (not settings.PRODUCTION and _is_loopback(request)), 403


def metrics(request: HttpRequest) -> HttpResponse:
    allowed, refusal = metrics_allowed(request)
    if not allowed:
        response = HttpResponse("Not allowed.\n", status=refusal, content_type="text/plain; charset=utf-8")
        if refusal == 401:
            response["WWW-Authenticate"] = 'Bearer realm="passport-metrics"'
        return _no_store(response)
    return _no_store(HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST))
