"""A local site admin's password-reset link leads to the portal people know (PASSPORT_BASE_URL),
whatever Host the request for it named, and it works there."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from tests.factories import make_user

pytestmark = pytest.mark.django_db

RESET_LINK = re.compile(r"\S*/accounts/password/reset/key/\S+")


def test_the_reset_link_is_on_the_portals_public_url_not_the_host_header(settings: Any) -> None:
    settings.PASSPORT_BASE_URL = "https://passport.example.test/"
    # Both reach the portal; the person asking for the reset picks which one their request names.
    settings.ALLOWED_HOSTS = ["passport.example.test", "passport-internal.example.test"]
    make_user("root", is_superuser=True, is_staff=True)  # a break-glass local site admin

    asked = Client().post(
        "/accounts/password/reset/", {"email": "root@example.test"}, HTTP_HOST="passport-internal.example.test"
    )

    assert asked.status_code == 302
    (message,) = mail.outbox
    links = RESET_LINK.findall(message.body)
    assert len(links) == 1 and links[0].startswith("https://passport.example.test/accounts/password/reset/key/")
    assert "passport-internal" not in links[0]

    # The link is the one allauth's page takes: it swaps the key for a session and asks for a password.
    path = links[0].removeprefix("https://passport.example.test")
    browser = Client(HTTP_HOST="passport.example.test")
    opened = browser.get(path, follow=True)
    assert opened.status_code == 200 and 'name="password1"' in opened.content.decode()
