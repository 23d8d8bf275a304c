"""The API: Django REST framework and the OpenAPI document (drf-spectacular)."""

from __future__ import annotations

from passport_portal.settings.portal import PASSPORT_TRUSTED_PROXY_COUNT

REST_FRAMEWORK = {
    # Bearer first: its WWW-Authenticate header makes a missing or expired token a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: the browsable renderer's pages run inline script (refused by the CSP) and need a
    # queryset on every view; people read the API at /api/docs/ instead.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "passport_portal.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "core.api.PassportCursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "passport_portal.api.exception_handlers.exception_handler",
    # No DEFAULT_THROTTLE_RATES: DRF's throttles count in the cache, one per process here; the
    # limits are counted in the database (audit.throttle): a signed-in person's changes by this
    # default, the anonymous endpoints' by their own throttles (accounts.cli_apis).
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api_limits.PersonWriteThrottle"],
    # Without it DRF takes a client's own X-Forwarded-For as its address.
    "NUM_PROXIES": PASSPORT_TRUSTED_PROXY_COUNT,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Passport API",
    "DESCRIPTION": "Just-in-time access to cloud servers: requests, approvals, grants and the Logbook.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # One name for the account's CLI session mode (``cli_sessions`` of an account, ``sessions`` of a certificate).
    "ENUM_NAME_OVERRIDES": {"CliSessionsEnum": "accounts.models.AwsAccount.CliSessions"},
}
