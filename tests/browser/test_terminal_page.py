"""The browser terminal as its person sees it: the "Ends" line follows an extension, warnings at
10 and 2 minutes appear inside the terminal, full screen, and the terminal takes the page's width.

Time is driven by moving the request's end time in the database, never by waiting for it."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import AwsAccount
from requests_app import services as request_services
from requests_app.models import AccessRequest, Grant
from tests.browser.test_request_flow import sign_in
from tests.factories import make_membership, make_user
from tests.stack import Cloud
from tests.terminal.helpers import active_request
from tests.terminal.test_browser import daphne  # noqa: F401  (the ASGI server the WebSocket needs)

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def _shown(when: Any) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def test_ends_line_warnings_full_screen_and_width(new_page: Any, daphne: str, aws: Cloud) -> None:  # noqa: F811
    item = next(account for account in aws.manifest["accounts"] if account["name"] == "Acme Production")
    prod = AwsAccount.objects.create(
        account_id=item["id"], name=item["name"], role_arn=item["role_arn"], regions=item["regions"]
    )
    assert not request_services.inventory_sync(account=prod).errors
    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, alice, approver)
    grant = Grant.objects.get(request=access_request)

    def ends_in(left: timedelta) -> Any:
        expires_at = timezone.now() + left
        AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=expires_at)
        return expires_at

    page = new_page()
    sign_in(page, daphne, "alice")
    page.goto(f"{daphne}/terminal/{grant.pk}/")
    expect(page.locator("[data-testid=terminal-status]")).to_have_text("Connected.", timeout=60_000)
    ends = page.locator("[data-testid=terminal-ends]")
    expect(ends).to_have_text(_shown(access_request.expires_at))
    notice = page.locator("[data-testid=terminal-notice]")
    expect(notice).to_be_hidden()

    # Extended (as from the request page or the CLI): the open terminal's Ends line follows, no reload.
    before = access_request.expires_at
    assert before is not None
    request_services.access_request_extend(access_request=access_request, actor=alice, by=timedelta(minutes=30))
    extended = AccessRequest.objects.get(pk=access_request.pk).expires_at
    assert extended == before + timedelta(minutes=30)
    expect(ends).to_have_text(_shown(extended), timeout=15_000)

    rows = page.locator(".xterm-rows")
    nine = ends_in(timedelta(minutes=9, seconds=30))
    expect(notice).to_contain_text("This access ends in 10 minutes", timeout=15_000)
    expect(notice).to_contain_text(f"at {nine.astimezone(UTC):%H:%M:%S} UTC")
    expect(rows).to_contain_text("Passport This access ends in 10 minutes")
    expect(ends).to_have_text(_shown(nine))
    ends_in(timedelta(seconds=100))
    expect(notice).to_contain_text("This access ends in 2 minutes", timeout=15_000)
    expect(rows).to_contain_text("This access ends in 2 minutes")
    # Extended again: the warning no longer holds and goes (and the scheduler leaves the request be).
    hour = ends_in(timedelta(hours=1))
    expect(ends).to_have_text(_shown(hour), timeout=15_000)
    expect(notice).to_be_hidden()

    # The shell never got the warnings: what it echoes of a command is only the command.
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.type("echo marker-$((6*7))")
    page.keyboard.press("Enter")
    expect(rows).to_contain_text("marker-42", timeout=20_000)
    # More output than the server sends unacknowledged (terminal.flow.MAX_UNACKED, 1 MiB): the page
    # acknowledges its marks as xterm.js writes, so all of it comes, and the line after it.
    page.keyboard.type("seq 1 300000; echo after-$((6*7))")
    page.keyboard.press("Enter")
    expect(rows).to_contain_text(re.compile(r"300000\s*after-42"), timeout=60_000)

    # The terminal takes the page's width (not the 1180 px reading column of other pages) ...
    box = page.locator("#terminal").bounding_box()
    assert box and box["width"] > 1200
    cols_before = page.evaluate("() => document.querySelector('.xterm-rows').children.length")
    assert cols_before > 0
    # ... and the whole window in full screen, until the button (or Esc) leaves it.
    button = page.locator("[data-testid=terminal-fullscreen]")
    expect(button).to_have_text("Full screen")
    button.click()
    page.wait_for_function("() => document.fullscreenElement && document.fullscreenElement.id === 'terminal-frame'")
    expect(button).to_have_text("Leave full screen")
    expect(button).to_have_attribute("aria-pressed", "true")
    page.wait_for_function(
        "() => document.getElementById('terminal').getBoundingClientRect().height > window.innerHeight * 0.8"
    )
    # Refit to the new height: more rows than before.
    page.wait_for_function(f"() => document.querySelector('.xterm-rows').children.length > {cols_before}")
    button.click()
    page.wait_for_function("() => document.fullscreenElement === null")
    expect(button).to_have_text("Full screen")
    expect(button).to_have_attribute("aria-pressed", "false")
