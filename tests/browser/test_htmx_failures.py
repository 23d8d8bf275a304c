"""What htmx could not do is shown on the page (static/js/passport.js), under the CSP (the
new_page fixture fails the test on any violation): a password reveal refused by the per-person
limit says how long to wait, one that cannot reach the portal says so; a status poll that gets a
server error says so and asks again more slowly, and the message goes when it succeeds."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.api_limits import SCOPE, WINDOW_SECONDS
from audit.models import ThrottleWindow
from audit.throttle import window_start_for
from requests_app.models import AccessRequest, RequestStatus
from tests.browser.test_windows_grant import PASSWORD, _open_request, _ready_windows_request

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_db")]

SCREENSHOTS = Path("/tmp/passport-screenshots")


def _screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def _used_up_changes(user_pk: int) -> None:
    """The person has used up this minute's changes, and the next minute's (so the click cannot
    land in a fresh window)."""
    start = window_start_for(timezone.now(), WINDOW_SECONDS)
    for window in (start, start + timedelta(seconds=WINDOW_SECONDS)):
        ThrottleWindow.objects.create(
            scope=SCOPE,
            key=str(user_pk),
            window_start=window,
            expires_at=window + timedelta(seconds=WINDOW_SECONDS),
            count=50,
        )


def test_a_refused_password_reveal_says_why_beside_the_button(new_page: Any, live_server: Any, settings: Any) -> None:
    settings.PASSPORT_API_WRITES_PER_MINUTE = 5
    access_request, grant = _ready_windows_request("win-1")
    page = new_page()
    _open_request(page, live_server.url, access_request)
    reveal = page.locator("button:has-text('Show password')")
    slot = page.locator(f"#password-{grant.pk}")

    # The portal cannot be reached at all.
    page.route("**/password/", lambda route: route.abort("connectionrefused"))
    reveal.click()
    message = slot.locator("[data-testid=htmx-error]")
    expect(message).to_have_text("Could not reach Passport: check your connection and try again.")
    expect(message).to_have_attribute("role", "alert")
    page.unroute("**/password/")

    # Past the per-person limit: the portal's own words, the same message element reused.
    _used_up_changes(grant.request.requester_id)
    reveal.click()
    expect(message).to_have_text(
        re.compile(r"^Too many changes: you have sent more than 5 in one minute\. Wait \d+ seconds and try again\.$")
    )
    expect(reveal).to_be_visible()  # nothing swapped: the button is there to try again
    assert slot.locator("[data-testid=htmx-error]").count() == 1
    _screenshot(page, "htmx-throttled-reveal.png")

    # Once allowed again, the password replaces the button and the message.
    ThrottleWindow.objects.filter(scope=SCOPE, key=str(grant.request.requester_id)).delete()
    reveal.click()
    expect(page.locator("[data-testid=windows-password]")).to_have_text(PASSWORD)
    assert page.locator("[data-testid=htmx-error]").count() == 0


def test_a_poll_that_fails_says_so_and_asks_again_more_slowly(new_page: Any, live_server: Any) -> None:
    access_request, _ = _ready_windows_request("win-1")
    # Provisioning: the status polls every 2 s.
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.PROVISIONING)
    page = new_page()
    _open_request(page, live_server.url, access_request)
    expect(page.locator("#status")).to_have_attribute("hx-trigger", "every 2s")

    asked: list[float] = []

    def status_poll(route: Any) -> None:
        asked.append(time.monotonic())
        if len(asked) <= 2:
            # As a proxy or a crashed process answers: a page that is not the portal's message.
            route.fulfill(status=500, content_type="text/html", body="<html><h1>Internal Server Error</h1></html>")
        else:
            route.continue_()

    page.route("**/*fragment=status*", status_poll)
    message = page.locator("[data-testid=htmx-error]")
    expect(message).to_have_text(
        "This part of the page is not up to date. Passport did not answer properly (error 500)."
        " Trying again in 4 seconds.",
        timeout=10_000,
    )
    expect(message).to_have_attribute("role", "status")
    expect(message).to_have_text(
        "This part of the page is not up to date. Passport did not answer properly (error 500)."
        " Trying again in 8 seconds.",
        timeout=10_000,
    )
    _screenshot(page, "htmx-failed-poll.png")
    # The third ask succeeds: the status is swapped in and the message goes.
    expect(message).to_have_count(0, timeout=15_000)
    assert len(asked) == 3
    first_gap, second_gap = asked[1] - asked[0], asked[2] - asked[1]
    # Every 2 s while it works; after one failure 4 s, after two 8 s (ticks of 2 s, a little early).
    assert 3.5 <= first_gap < 6, asked
    assert 7.5 <= second_gap < 10, asked
    expect(page.locator("#status")).to_be_visible()
