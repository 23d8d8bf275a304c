"""Absolute links into the portal, for mails, the CLI's install scripts and anything else read away
from the request: all on ``PASSPORT_BASE_URL``, read one way (``portal_base_url``)."""

from __future__ import annotations

import ipaddress
import re

from django.conf import settings

# http(s) in any case, a host name (underscores too: some internal names have them) or address, an
# IPv6 one in brackets, an optional port and path: nothing a mail's header, a shell or PowerShell
# single-quoted string (the CLI's install scripts embed it) would treat specially. No user or
# password, query, fragment, percent sign (an IPv6 zone), quote, space or line break.
_BASE_URL_RE = re.compile(
    r"(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://"
    r"(?:[A-Za-z0-9._-]+|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?:/[A-Za-z0-9._~/-]*)?"
)


def portal_base_url() -> str:
    """``PASSPORT_BASE_URL`` as ``base_url_clean`` reads it. Production refuses to start on a URL
    this gives "" for (passport.E004); elsewhere a warning says so (passport.W004)."""
    return base_url_clean(str(getattr(settings, "PASSPORT_BASE_URL", "") or ""))


def base_url_clean(url: str) -> str:
    """``url`` without surrounding spaces and its trailing slash, its scheme in lower case, or ""
    when it is empty or not a plain http(s) URL."""
    base = url.strip().rstrip("/")
    found = _BASE_URL_RE.fullmatch(base)
    if found is None:
        return ""
    if found["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(found["ipv6"])
        except ValueError:
            return ""
    if found["port"] is not None and not 0 < int(found["port"]) <= 65535:
        return ""
    return found["scheme"].lower() + base[len(found["scheme"]) :]


def portal_url(path: str) -> str:
    """``path`` (from ``reverse``) on the portal's public URL, ``portal_base_url``; the path alone
    when that is unset or invalid, so a link never leads anywhere but the portal.

    Never the Host header of the request that caused the mail: whoever sends a request chooses
    it (among the allowed hosts, an internal name included), and a link in a mail must lead to
    the portal people know.
    """
    return portal_base_url() + path
