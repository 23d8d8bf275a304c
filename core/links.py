"""Absolute links into the portal, for mails and anything else read away from the request."""

from __future__ import annotations

from django.conf import settings


def portal_url(path: str) -> str:
    """``path`` (from ``reverse``) on the portal's public URL, ``PASSPORT_BASE_URL``.

    Never the Host header of the request that caused the mail: whoever sends a request chooses
    it (among the allowed hosts, an internal name included), and a link in a mail must lead to
    the portal people know.
    """
    return str(settings.PASSPORT_BASE_URL).rstrip("/") + path
