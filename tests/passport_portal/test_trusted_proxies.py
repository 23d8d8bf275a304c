"""X-Forwarded-Proto and X-Forwarded-For count only from PASSPORT_TRUSTED_PROXIES (passport_portal.proxies)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from passport_portal.proxies import networks_parse


@pytest.fixture
def behind_tls(settings: Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.PASSPORT_TRUSTED_PROXIES = ["10.1.0.0/16", "::1/128"]


def test_a_client_past_the_proxy_cannot_claim_https(db: None, behind_tls: None) -> None:
    direct = Client().get("/accounts/login/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_PROTO="https")
    assert direct.status_code == 301 and direct["Location"].startswith("https://")  # plain http it is


def test_a_trusted_proxys_https_counts(db: None, behind_tls: None) -> None:
    for peer in ("10.1.200.3", "::1", "::ffff:10.1.0.9"):
        proxied = Client().get("/accounts/login/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_PROTO="https")
        assert proxied.status_code == 200, peer


def test_the_check_runs_before_everything_that_reads_the_headers(settings: Any) -> None:
    # Only the one that hands a streamed response's connection back comes before: it reads no header.
    assert settings.MIDDLEWARE[:2] == [
        "passport_portal.middleware.StreamingHandsConnectionBackMiddleware",
        "passport_portal.proxies.ForwardedHeadersMiddleware",
    ]


def test_the_setting_is_networks() -> None:
    assert [str(n) for n in networks_parse("127.0.0.1/32, ::1/128,10.0.0.7")] == [
        "127.0.0.1/32",
        "::1/128",
        "10.0.0.7/32",
    ]
    with pytest.raises(ImproperlyConfigured, match="nginx"):
        networks_parse("10.0.0.0/8,nginx")
