"""Absolute links into the portal, for mails, the CLI's install scripts and anything else read away
from the request: all on ``PASSPORT_BASE_URL``, read one way (``portal_base_url``)."""

from __future__ import annotations

import re

from django.conf import settings

# http(s), a host name or address, an optional port and path: nothing a mail's header, a shell or
# PowerShell single-quoted string (the CLI's install scripts embed it) would treat specially.
_BASE_URL_RE = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?")


def portal_base_url() -> str:
    """``PASSPORT_BASE_URL`` without surrounding spaces and its trailing slash, or "" when it is unset
    or not a plain http(s) URL (a ``check --deploy`` warning says so in production: passport.W004)."""
    base = str(getattr(settings, "PASSPORT_BASE_URL", "") or "").strip().rstrip("/")
    return base if _BASE_URL_RE.fullmatch(base) else ""


def portal_url(path: str) -> str:
    """``path`` (from ``reverse``) on the portal's public URL, ``portal_base_url``; the path alone
    when that is unset or invalid, so a link never leads anywhere but the portal.

    Never the Host header of the request that caused the mail: whoever sends a request chooses
    it (among the allowed hosts, an internal name included), and a link in a mail must lead to
    the portal people know.
    """
    return portal_base_url() + path
