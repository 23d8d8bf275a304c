"""The CLI sign-in's codes cannot be guessed at speed: per-person attempts, per-address starts.

Through the real confirmation page and API with Django's test client; the counts are in the
database (audit.ThrottleWindow), so they hold across web processes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from accounts.models import DeviceAuthorization
from audit.models import LogbookEntry
from tests.conftest import World

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # just after a 10-minute window starts
WRONG = "ZZZZ-ZZZZ"


@pytest.fixture(autouse=True)
def limits(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_CLI_CODE_ATTEMPTS = 10
    settings.PASSPORT_CLI_CODE_WINDOW_SECONDS = 600
    settings.PASSPORT_CLI_STARTS_PER_MINUTE = 20
    settings.PASSPORT_TRUSTED_PROXY_COUNT = 0
    time_machine.move_to(T0, tick=False)


def start(address: str = "192.0.2.10", **headers: str) -> Any:
    return Client().post("/api/cli/device/", {}, content_type="application/json", REMOTE_ADDR=address, **headers)


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def confirm(client: Client, code: str) -> Any:
    return client.post("/cli/device/", {"user_code": code})


def test_past_ten_wrong_codes_even_the_right_one_is_refused_unchecked(world: World, time_machine: Any) -> None:
    code = start().json()["user_code"]
    alice = browser(world.requester)
    for _ in range(10):
        assert confirm(alice, WRONG).status_code == 400
    refused = confirm(alice, code)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 600 - 5 + 1
    assert "Too many codes tried: wait 10 minutes" in refused.content.decode()
    # Not even checked: the CLI's sign-in is still waiting.
    assert DeviceAuthorization.objects.get(user_code=code).confirmed_at is None
    assert confirm(alice, code).status_code == 429
    # The Logbook says so once per window, however often the person keeps trying.
    throttled = LogbookEntry.objects.filter(action="cli.code_throttled")
    assert [(entry.actor, entry.detail["limit"]) for entry in throttled] == [(world.requester, 10)]

    # Another person is not held back by alice's guesses.
    assert confirm(browser(world.member), WRONG).status_code == 400
    # The next window (09:10) starts afresh, while the code (ten minutes) still lives.
    time_machine.move_to(T0 + timedelta(minutes=9, seconds=56), tick=False)
    assert confirm(alice, code).status_code == 200
    assert DeviceAuthorization.objects.get(user_code=code).user == world.requester


def test_right_codes_do_not_use_up_the_attempts(world: World) -> None:
    alice = browser(world.requester)
    for _ in range(9):
        assert confirm(alice, WRONG).status_code == 400
    for _ in range(3):
        code = start().json()["user_code"]
        # The page the CLI's link opens looks the code up, then the person confirms it.
        assert alice.get("/cli/device/", {"code": code}).status_code == 200
        assert confirm(alice, code).status_code == 200
    assert confirm(alice, WRONG).status_code == 400  # the tenth wrong one
    assert confirm(alice, WRONG).status_code == 429


# The portal's own form (same-origin), a typed URL or the CLI's link opened by the browser (none),
# a client that says nothing.
@pytest.mark.parametrize("fetch_site", [{"HTTP_SEC_FETCH_SITE": "same-origin"}, {"HTTP_SEC_FETCH_SITE": "none"}, {}])
def test_looking_codes_up_counts_as_trying_them(world: World, fetch_site: dict[str, str]) -> None:
    code = start().json()["user_code"]
    alice = browser(world.requester)
    for _ in range(10):
        page = alice.get("/cli/device/", {"code": WRONG}, **fetch_site)
        assert page.status_code == 200 and "unknown or has expired" in page.content.decode()
    looked_up = alice.get("/cli/device/", {"code": code}, **fetch_site)
    assert looked_up.status_code == 429
    assert "Too many codes tried" in looked_up.content.decode()


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site"])
def test_another_sites_code_links_use_up_none_of_the_persons_attempts(world: World, fetch_site: str) -> None:
    """A page of another site (or of a sibling host) can send a signed-in person's tab to
    /cli/device/?code=... as often as it likes, with the Lax session cookie: that only fills the
    code in. Nothing is looked up, counted or written in the person's name."""
    alice = browser(world.requester)
    for _ in range(12):
        page = alice.get("/cli/device/", {"code": WRONG}, HTTP_SEC_FETCH_SITE=fetch_site)
        assert page.status_code == 200 and "unknown or has expired" not in page.content.decode()
    assert not LogbookEntry.objects.filter(action="cli.code_throttled").exists()

    # Her own CLI's code, typed by her, is looked up and confirmed.
    code = start().json()["user_code"]
    assert alice.get("/cli/device/", {"code": code}, HTTP_SEC_FETCH_SITE="same-origin").status_code == 200
    assert confirm(alice, code).status_code == 200
    assert DeviceAuthorization.objects.get(user_code=code).user == world.requester
    # All ten attempts are still hers.
    for _ in range(10):
        assert confirm(alice, WRONG).status_code == 400
    assert confirm(alice, WRONG).status_code == 429


def test_starts_are_limited_per_client_address_not_per_claimed_address(db: None) -> None:
    for n in range(20):
        # A made-up X-Forwarded-For does not make a new client.
        assert start(HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code == 200
    refused = start(HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 60 - 5 + 1
    assert DeviceAuthorization.objects.count() == 20
    assert start("192.0.2.11").status_code == 200


def test_a_forwarded_address_is_a_client_only_from_a_trusted_proxy(db: None, settings: Any) -> None:
    settings.PASSPORT_TRUSTED_PROXY_COUNT = 1
    settings.PASSPORT_TRUSTED_PROXIES = ["10.1.0.0/16"]
    # Reaching the web process directly, a client's X-Forwarded-For does not make it a new client.
    for n in range(20):
        assert start("192.0.2.10", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code == 200
    assert start("192.0.2.10", HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429
    # Through our proxy, the address it saw is the client: each its own count.
    for n in range(21):
        assert start("10.1.0.5", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code == 200
