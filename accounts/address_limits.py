"""Requests per client address and minute, counted in the database: the limits on what anyone may
call without signing in (the CLI's device sign-in, its release index and its wheel download, and a
SAML sign-in started in a browser with no session).

Django's cache, where DRF's own throttles keep their counts, is one per process here, so every
web process would allow the rate again; ``audit.throttle`` counts in a row all processes share.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from audit.refusals import client_source
from audit.throttle import ThrottleVerdict, throttle_hit


def client_address_hit(request: HttpRequest, *, scope: str, limit_setting: str) -> ThrottleVerdict:
    """Count this request against its client address (``audit.refusals.client_source``) in
    ``scope``: allowed while the minute's count stays within the setting named ``limit_setting``,
    read now; ``retry_after`` says when the minute ends."""
    return throttle_hit(
        scope=scope, key=client_source(request), limit=getattr(settings, limit_setting), window_seconds=60
    )
