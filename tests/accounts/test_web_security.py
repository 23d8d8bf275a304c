"""Web security of the sign-in and the pages: cookies, CSRF, headers, redirects, throttling."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from tests.factories import make_user

LOGIN = "/accounts/login/"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> Iterator[None]:
    # allauth keeps its counters in the cache: every test starts (and leaves) with none.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def person() -> User:
    return make_user("alice")


def sign_in(client: Client, *, wrong_password: bool = False, next_url: str | None = None) -> Any:
    url = LOGIN + (f"?next={next_url}" if next_url else "")
    data = {"login": "alice", "password": "wrong" if wrong_password else "pw-alice"}
    if next_url:
        data["next"] = next_url
    return client.post(url, data)


def test_session_cookie_is_httponly_and_samesite(client: Client, person: User) -> None:
    response = sign_in(client)
    assert response.status_code == 302
    cookie = client.cookies["sessionid"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    csrf = client.cookies.get("csrftoken")
    if csrf is not None:
        assert csrf["samesite"] == "Lax"


def test_csrf_is_enforced_on_the_sign_in_form(person: User) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.post(LOGIN, {"login": "alice", "password": "pw-alice"}).status_code == 403
    assert "_auth_user_id" not in client.session
    # With the token from the form, the same POST goes through.
    client.get(LOGIN)
    token = client.cookies["csrftoken"].value
    response = client.post(LOGIN, {"login": "alice", "password": "pw-alice", "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_security_headers(client: Client) -> None:
    response = client.get(LOGIN)
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_no_open_redirect_through_next(client: Client, person: User) -> None:
    response = sign_in(client, next_url="https://evil.example/phish")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "evil.example" not in location
    assert location.startswith("/")


def test_a_local_next_is_honoured(client: Client, person: User) -> None:
    response = sign_in(client, next_url="/requests/new/")
    assert response.headers["Location"] == "/requests/new/"


def test_protocol_relative_next_is_refused(client: Client, person: User) -> None:
    response = sign_in(client, next_url="//evil.example/")
    assert "evil.example" not in response.headers["Location"]


def test_repeated_failed_sign_ins_are_throttled(client: Client, person: User) -> None:
    statuses = [sign_in(client, wrong_password=True).status_code for _ in range(5)]
    assert all(status == 200 for status in statuses)  # the form again, with its error
    throttled = sign_in(client, wrong_password=True)
    body = throttled.content.decode()
    assert throttled.status_code == 429 or "Too many failed login attempts" in body
    # Even the right password is refused while the limit holds.
    blocked = sign_in(client)
    assert blocked.status_code != 302
    assert "_auth_user_id" not in client.session


@pytest.mark.usefixtures("live_db")
def test_the_failed_sign_in_limit_holds_across_web_processes(person: User, settings: Any) -> None:
    # Several web processes behind one proxy, no stickiness: a limit kept per process would let
    # each of them take its own five guesses.
    for _ in range(6):
        sign_in(Client(), wrong_password=True)
    database = settings.DATABASES["default"]
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    another_process = (
        "import django; django.setup(); from django.test import Client; "
        "r = Client().post('/accounts/login/', {'login': 'alice', 'password': 'pw-alice'}); "
        "print(r.status_code, r.headers.get('Location'))"
    )

    ran = subprocess.run(
        [sys.executable, "-c", another_process],
        env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "passport_portal.settings"},
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    status, location = ran.stdout.split()[-2:]
    assert (status, location) != ("302", "/requests/")  # the right password, refused while the limit holds
