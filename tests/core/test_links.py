"""The portal's public URL (core.links), read one way for mails and for the CLI's install scripts:
surrounding spaces and a trailing slash dropped; unset or not a plain http(s) URL, no base at all,
so no link leads anywhere but the portal (a mail's link is then its path alone)."""

from __future__ import annotations

from typing import Any

import pytest

from core.links import portal_base_url, portal_url


@pytest.mark.parametrize(
    ("configured", "base"),
    [
        ("https://passport.example.com", "https://passport.example.com"),
        ("https://passport.example.com/", "https://passport.example.com"),
        ("  https://passport.example.com/  ", "https://passport.example.com"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://example.com:8443/passport/", "https://example.com:8443/passport"),
    ],
)
def test_the_configured_url_is_the_base_of_every_link(settings: Any, configured: str, base: str) -> None:
    settings.PASSPORT_BASE_URL = configured
    assert portal_base_url() == base
    assert portal_url("/requests/7/") == base + "/requests/7/"


@pytest.mark.parametrize(
    "configured",
    [
        "",
        None,
        "javascript:alert(1)",
        "passport.example.com",
        "https://x.example/'; rm -rf ~; '",
        "https://x.example/\nBcc: someone@example.com",
        "https://user@x.example/",
    ],
)
def test_an_unset_or_invalid_url_is_no_base(settings: Any, configured: str | None) -> None:
    settings.PASSPORT_BASE_URL = configured
    assert portal_base_url() == ""
    assert portal_url("/requests/7/") == "/requests/7/"
