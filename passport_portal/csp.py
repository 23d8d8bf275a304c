"""The Content-Security-Policy on every response: django-csp's middleware, policy in settings.

The policy itself is ``CONTENT_SECURITY_POLICY`` in settings; the portal's own views that need
one thing more say so with django-csp's decorators. Here: what depends on the person (a SAML
sign-out is a form post that the portal redirects on to the identity provider, so that provider's
origin joins ``form-action`` on the pages of people it signed in), and the extras of pages
other apps render.
"""

from __future__ import annotations

from typing import Any

from csp.constants import SELF
from csp.middleware import CSPMiddleware, PolicyParts
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from accounts.saml.csp import sign_out_origin

# Pages of other apps, by URL name, that need one thing more than the site's policy.
THIRD_PARTY_PAGE_EXTRAS: dict[str, dict[str, list[str]]] = {
    # allauth's TOTP set-up shows its QR code as a data: SVG image.
    "mfa_activate_totp": {"img-src": [SELF, "data:"]},
}


class PassportCSPMiddleware(CSPMiddleware):
    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request=request, response=response, report_only=report_only)
        update: dict[str, Any] = dict(parts.update or {})
        match = getattr(request, "resolver_match", None)
        for directive, sources in THIRD_PARTY_PAGE_EXTRAS.get(match.view_name if match else "", {}).items():
            update[directive] = [*(update.get(directive) or []), *sources]
        origin = sign_out_origin(request)
        if origin:
            update["form-action"] = [*(update.get("form-action") or []), origin]
        parts.update = update or parts.update
        return parts
