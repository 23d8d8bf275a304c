"""Break-glass local accounts with TOTP (allauth.mfa), through the real pages.

The codes are computed here per RFC 6238 (HMAC-SHA1, 30 s steps, 6 digits) from the secret
the activation page shows, as an authenticator app would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.test import Client
from time_machine import TimeMachineFixture

from audit.models import LogbookEntry
from tests.conftest import World
from tests.factories import make_user


def totp(secret: str, at: float | None = None) -> str:
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def test_totp_matches_the_rfc_6238_vector() -> None:
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp(secret, at=59) == "287082"


def password_sign_in(client: Client, username: str) -> str:
    response = client.post("/accounts/login/", {"login": username, "password": f"pw-{username}"})
    assert response.status_code == 302
    return response["Location"]


def alice_with_her_password() -> Client:
    """A browser of its own where Alice signed in with her password (no second factor yet)."""
    browser = Client()
    password_sign_in(browser, "alice")
    return browser


def turn_totp_on(client: Client) -> str:
    """Alice, signed in on ``client`` with her password alone, turns TOTP on (asked for her password
    again on the way): its secret. Her recovery codes are made with it."""
    asked = client.get("/accounts/2fa/totp/activate/")
    client.post(asked["Location"], {"password": "pw-alice"})
    secret: str = client.get("/accounts/2fa/totp/activate/").context["form"].secret
    assert client.post("/accounts/2fa/totp/activate/", {"code": totp(secret)}).status_code == 302
    return secret


# The clock stands still inside each step, so a code never straddles a 30 s boundary.
START = datetime(2026, 11, 20, 9, 0, 5, tzinfo=UTC)


def test_a_local_person_enables_totp_and_then_needs_a_code_to_sign_in(
    world: World, time_machine: TimeMachineFixture
) -> None:
    time_machine.move_to(START, tick=False)
    client = Client()
    assert password_sign_in(client, "alice") == "/requests/"
    # Turning TOTP on asks for the password again first.
    asked = client.get("/accounts/2fa/totp/activate/")
    assert asked.status_code == 302 and asked["Location"].startswith("/accounts/reauthenticate/")
    again = client.post(asked["Location"], {"password": "pw-alice"})
    assert again.status_code == 302 and again["Location"] == "/accounts/2fa/totp/activate/"
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = page.context["form"].secret
    wrong = client.post("/accounts/2fa/totp/activate/", {"code": "000000" if totp(secret) != "000000" else "111111"})
    assert wrong.status_code == 200 and wrong.context["form"].errors
    enabled = client.post("/accounts/2fa/totp/activate/", {"code": totp(secret)})
    assert enabled.status_code == 302
    client.post("/accounts/logout/")
    time_machine.move_to(START + timedelta(minutes=2), tick=False)

    # The password alone no longer signs Alice in: she is asked for a code.
    fresh = Client()
    assert password_sign_in(fresh, "alice") == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in fresh.session
    refused = fresh.post("/accounts/2fa/authenticate/", {"code": "12345"})
    assert refused.status_code == 200 and "_auth_user_id" not in fresh.session
    accepted = fresh.post("/accounts/2fa/authenticate/", {"code": totp(secret)})
    assert accepted.status_code == 302 and accepted["Location"] == "/requests/"
    assert fresh.session["_auth_user_id"] == str(world.requester.pk)
    entry = LogbookEntry.objects.filter(action="auth.signed_in", actor=world.requester).order_by("-id").first()
    assert entry is not None and entry.detail == {"method": "local", "identity_store": "customer", "mfa": True}


def test_without_totp_the_password_is_enough(world: World) -> None:
    client = Client()
    assert password_sign_in(client, "erin") == "/requests/"
    assert client.session["_auth_user_id"] == str(world.member.pk)
    entry = LogbookEntry.objects.get(action="auth.signed_in", actor=world.member)
    assert entry.detail["mfa"] is False


def test_the_admin_sign_in_form_is_the_portals_with_its_code_step(world: World, settings: Any) -> None:
    # Django's admin form took a password alone: no TOTP step, no failed-sign-in limit, no Logbook.
    root = make_user("root", is_superuser=True, is_staff=True)
    TOTP.activate(root, generate_totp_secret())
    client = Client()

    posted = client.post("/admin/login/?next=/requests/", {"username": "root", "password": "pw-root"})
    asked = client.get("/admin/")
    followed = client.get(asked["Location"])
    sent_away = client.get("/admin/login/?next=https://evil.example/")
    signed_in = client.post(followed["Location"], {"login": "root", "password": "pw-root"})

    assert posted.status_code == 302 and posted["Location"] == "/accounts/login/?next=%2Frequests%2F"
    assert "_auth_user_id" not in client.session
    assert asked["Location"] == "/admin/login/?next=/admin/"
    assert followed["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    assert sent_away["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    # The portal's form asks for the code, and signs nobody in before it.
    assert signed_in.status_code == 302 and signed_in["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_the_admin_password_change_is_the_portals(world: World) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(root)

    response = client.post("/admin/password_change/", {"old_password": "pw-root", "new_password1": "x" * 20})

    assert response.status_code == 302 and response["Location"] == "/accounts/password/change/"
    root.refresh_from_db()
    assert root.check_password("pw-root")
