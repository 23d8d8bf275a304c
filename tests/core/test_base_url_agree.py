"""The deployment check (passport.E004, which lets production start) and the one reader of the base
URL (core.links.portal_base_url, which every mail link and the CLI's install scripts go through)
agree: a base URL production starts with gives absolute links, and one the links cannot use stops
production from starting, so mails never carry bare paths ("/requests/7/") with nothing saying why."""

from __future__ import annotations

from typing import Any

import pytest

from core.links import portal_base_url, portal_url
from passport_portal.connection_checks import base_url_check


@pytest.fixture(autouse=True)
def production(settings: Any) -> None:
    settings.PASSPORT_ENV = "production"


@pytest.mark.parametrize(
    ("configured", "base"),
    [
        ("https://[2001:db8::5]", "https://[2001:db8::5]"),
        ("https://[2001:db8::5]:8443/passport/", "https://[2001:db8::5]:8443/passport"),
        ("https://[::ffff:192.0.2.7]", "https://[::ffff:192.0.2.7]"),
        ("HTTPS://passport.example.com", "https://passport.example.com"),
        ("Https://Passport.Example.com/", "https://Passport.Example.com"),
        ("https://passport_1.corp", "https://passport_1.corp"),
    ],
)
def test_a_base_url_production_starts_with_gives_absolute_links(settings: Any, configured: str, base: str) -> None:
    settings.PASSPORT_BASE_URL = configured
    assert base_url_check(None) == []
    assert portal_base_url() == base
    assert portal_url("/requests/7/") == f"{base}/requests/7/"


@pytest.mark.parametrize(
    "configured",
    [
        "https://x.example/'; rm -rf ~; '",
        "https://x.example/\nBcc: someone@example.com",
        'https://x.example/"',
        "https://x.example/a b",
        "https://x.example/$(id)",
        "https://user@x.example/",
        "https://user:secret@x.example/",
        "https://x.example/?next=/",
        "https://x.example/#top",
        "https://[2001:db8::5%25eth0]",
        "https://[2001:db8::zz]",
        "https://[2001:db8::5",
        "https://x.example:99999",
        "https://[2001:db8::5]'",
        "javascript://x.example/%0aalert(1)",
    ],
)
def test_a_base_url_the_links_cannot_use_stops_production(settings: Any, configured: str) -> None:
    settings.PASSPORT_BASE_URL = configured
    assert portal_base_url() == ""
    assert [finding.id for finding in base_url_check(None)] == ["passport.E004"]
