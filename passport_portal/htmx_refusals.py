"""Every refusal an htmx request gets is a short message the page can show (core/htmx.py).

Views that refuse for a reason of their own (the per-person limit on changes, a request rule)
answer with ``htmx_refusal`` themselves. What Django answers for them (not allowed, not found,
a server error, a failed CSRF check, a signed-out session) is a whole page meant for a
navigation; for an htmx request it is replaced here by one line saying the same.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import resolve_url
from django.views.csrf import csrf_failure as django_csrf_failure

from core.htmx import MESSAGE_HEADER, htmx_refusal, is_htmx

# The words of templates/400.html, 403.html, 404.html and 500.html, as one line each.
REFUSALS = {
    400: "Passport could not read this request. Reload the page and try again.",
    403: "Not allowed: you may not do this here. If you think you should, ask an approver or the site administrator.",
    404: "Not found: this is gone, or not yours to see. Reload the page.",
    405: "Passport does not do this here. Reload the page and try again.",
    500: "Passport could not finish this. It has been logged; try again in a moment.",
}
KEPT_OUT = frozenset({"content-type", "content-length", "content-disposition"})
SIGNED_OUT = "You are signed out. Reload the page to sign in again."
CSRF_REFUSED = "This page has expired, so nothing was done. Reload the page and try again."


def _generic_refusal(status: int) -> str:
    if status in REFUSALS:
        return REFUSALS[status]
    if status >= 500:
        return REFUSALS[500]
    return REFUSALS[400]


class HtmxRefusalMiddleware:
    """For an htmx request: an error answer that is not already a short message becomes one,
    and the sign-in page a signed-out poll would be redirected to (and htmx would swap into a
    corner of the page) becomes a 401 that says so."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not is_htmx(request) or response.has_header(MESSAGE_HEADER):
            return response
        status = response.status_code
        if status in (301, 302, 303, 307, 308) and self._to_sign_in(response):
            return htmx_refusal(SIGNED_OUT, status=401)
        if status < 400:
            return response
        refusal = htmx_refusal(_generic_refusal(status), status=status)
        for header, value in response.items():
            if header.lower() not in KEPT_OUT:
                refusal[header] = value  # Retry-After, Allow, Vary, Cache-Control ... as the page had them
        return refusal

    @staticmethod
    def _to_sign_in(response: HttpResponseBase) -> bool:
        location = response.get("Location", "")
        return location.split("?", 1)[0] == resolve_url(settings.LOGIN_URL)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF failure page (templates/403_csrf.html), or one line for htmx."""
    if is_htmx(request):
        return htmx_refusal(CSRF_REFUSED, status=403)
    return django_csrf_failure(request, reason=reason)
