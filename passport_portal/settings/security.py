"""Sessions, cookies, the Content-Security-Policy, https and the forwarded-protocol header."""

from __future__ import annotations

from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import env_bool, env_int
from passport_portal.settings.environment import PRODUCTION

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# templates/403_csrf.html, or one line for an htmx request (passport_portal/htmx_refusals.py).
CSRF_FAILURE_VIEW = "passport_portal.htmx_refusals.csrf_failure"
SESSION_COOKIE_AGE = env_int("PASSPORT_SESSION_SECONDS", 8 * 3600)
# Django moves a session's expiry at each write; this is the end no write moves: a signed-in
# session is signed out this long after its sign-in (or earlier, when its IdP says so).
PASSPORT_SESSION_MAX_AGE_SECONDS = env_int("PASSPORT_SESSION_MAX_AGE_SECONDS", SESSION_COOKIE_AGE)
if SESSION_COOKIE_AGE < 1 or PASSPORT_SESSION_MAX_AGE_SECONDS < 1:
    raise ImproperlyConfigured("PASSPORT_SESSION_SECONDS and PASSPORT_SESSION_MAX_AGE_SECONDS must be at least 1.")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp; passport_portal/csp.py): everything from the portal itself,
# no inline script, style or event handler, no eval, no plugins, no framing, no <base>. The pages
# keep their scripts and styles in static files; the browser tests fail on any violation.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "frame-ancestors": [csp.NONE],
        # Forms post to the portal only (a SAML sign-out adds its IdP: passport_portal/csp.py).
        "form-action": [csp.SELF],
    }
}
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("PASSPORT_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("PASSPORT_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
# Behind a proxy that ends TLS, the portal sees plain http and the proxy's X-Forwarded-Proto says
# what the browser used. Anyone can send that header, so it counts only where the operator says
# a proxy sets it (and drops the client's own); otherwise the request's own scheme decides.
if env_bool("PASSPORT_TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
