"""A local site admin's password-reset link leads to the portal people know (PASSPORT_BASE_URL),
whatever Host the request for it named, and it works there; for an hour (PASSPORT_PASSWORD_RESET_SECONDS)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from time_machine import TimeMachineFixture

from tests.factories import make_user

pytestmark = pytest.mark.django_db

RESET_LINK = re.compile(r"\S*/accounts/password/reset/key/\S+")
CSRF_TOKEN = re.compile(r"[A-Za-z0-9]{64}")


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


def _reset_link_path(email: str) -> str:
    assert Client().post("/accounts/password/reset/", {"email": email}).status_code == 302
    (message,) = mail.outbox
    (link,) = RESET_LINK.findall(str(message.body))
    return re.sub(r"^https?://[^/]+", "", link)


def test_a_reset_link_works_for_an_hour_and_is_refused_plainly_after(time_machine: TimeMachineFixture) -> None:
    # Django's default would be 3 days of a link, for a break-glass site admin, lying in a mailbox.
    sent = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)
    time_machine.move_to(sent, tick=False)
    make_user("root", is_superuser=True, is_staff=True)
    path = _reset_link_path("root@example.test")

    time_machine.move_to(sent + timedelta(minutes=55), tick=False)
    fresh = Client().get(path, follow=True)
    assert 'name="password1"' in fresh.content.decode()

    time_machine.move_to(sent + timedelta(hours=2), tick=False)
    browser = Client()
    stale = browser.get(path, follow=True)
    page = stale.content.decode()
    assert 'name="password1"' not in page
    assert "This password reset link has expired or has already been used" in page
    # Nor does posting a new password to where the link led set it.
    pw = "an-entirely-new-passw0rd-7!"
    browser.post(stale.redirect_chain[-1][0] if stale.redirect_chain else path, {"password1": pw, "password2": pw})
    from accounts.models import User

    assert not User.objects.get(username="root").check_password(pw)


def test_the_reset_link_lifetime_is_a_checked_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from django.core.exceptions import ImproperlyConfigured

    import passport_portal.settings.auth as auth_settings

    assert auth_settings.PASSWORD_RESET_TIMEOUT == 3600
    try:
        for bad in ("0", "172800", "an hour"):
            monkeypatch.setenv("PASSPORT_PASSWORD_RESET_SECONDS", bad)
            with pytest.raises(ImproperlyConfigured, match="PASSPORT_PASSWORD_RESET_SECONDS"):
                importlib.reload(auth_settings)
        monkeypatch.setenv("PASSPORT_PASSWORD_RESET_SECONDS", "900")
        assert importlib.reload(auth_settings).PASSWORD_RESET_TIMEOUT == 900
    finally:
        monkeypatch.delenv("PASSPORT_PASSWORD_RESET_SECONDS")
        importlib.reload(auth_settings)


@pytest.fixture
def two_hosts(settings: Any) -> None:
    settings.PASSPORT_BASE_URL = "https://passport.example.test/"
    settings.ALLOWED_HOSTS = ["passport.example.test", "passport-internal.example.test"]


def _ask_reset(email: str) -> tuple[str, str]:
    """Ask for a reset as an anonymous caller naming the internal host: where the page sends them, and what it says."""
    client = Client(HTTP_HOST="passport-internal.example.test")
    asked = client.post("/accounts/password/reset/", {"email": email})
    assert asked.status_code == 302
    done = client.get(asked["Location"])
    return asked["Location"], CSRF_TOKEN.sub("TOKEN", done.content.decode())


@pytest.mark.usefixtures("two_hosts")
def test_a_reset_for_an_address_nobody_has_mails_nobody_and_reads_the_same() -> None:
    make_user("root", is_superuser=True, is_staff=True)
    known = _ask_reset("root@example.test")
    assert [m.to for m in mail.outbox] == [["root@example.test"]]
    mail.outbox.clear()

    unknown = _ask_reset("victim@elsewhere.test")

    # Sign-up is closed: a stranger's address gets no mail (least of all a sign-up link built from
    # the Host header the caller chose), and the page does not tell the caller nobody has it.
    assert mail.outbox == []
    assert unknown[0] == known[0]
    assert unknown[1].replace("victim@elsewhere.test", "root@example.test") == known[1]


@pytest.mark.usefixtures("two_hosts")
def test_the_reset_mail_names_the_portal_not_the_host_header() -> None:
    make_user("root", is_superuser=True, is_staff=True)
    _ask_reset("root@example.test")

    (message,) = mail.outbox
    text = message.subject + "\n" + message.body
    assert "passport-internal" not in text, text
    assert message.subject.startswith("[Passport] ")
    assert "https://passport.example.test" in message.body.replace("https://passport.example.test/accounts", "")
