"""OSC 8 hyperlinks printed by an instance open nothing when clicked, in the browser terminal and on
the watch page: a hostile host would otherwise put a link of its choosing (xterm.js's default asks,
then opens any https URL) in front of its person and of the approvers watching."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import AwsAccount
from requests_app.models import Grant
from terminal.models import TerminalSession
from tests.browser.test_request_flow import sign_in
from tests.factories import make_membership, make_user
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import active_request
from tests.terminal.test_browser import daphne  # noqa: F401  (the ASGI server the WebSockets need)

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]

# Two OSC 8 links, an https one and a javascript: one, each on a line of its own.
PRINT_LINKS = (
    "clear; printf '\\033]8;;https://evil.invalid/x\\033\\\\HTTPSLINK\\033]8;;\\033\\\\\\n"
    "\\033]8;;javascript:alert(1)\\033\\\\JSLINK\\033]8;;\\033\\\\\\n'"
)


def _click_each_link(page: Any, scope: str) -> tuple[list[str], list[Any]]:
    """Hover, then click, the middle of each link's text; what dialogs and new pages that made."""
    dialogs: list[str] = []
    popups: list[Any] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.context.on("page", lambda opened: popups.append(opened))
    url = page.url
    for text in ("HTTPSLINK", "JSLINK"):
        cell = page.locator(f"{scope} .xterm-rows span").filter(has_text=re.compile(f"^{text}$")).last
        box = cell.bounding_box()
        assert box is not None, f"{text} not on the screen"
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x - 3, y)
        page.wait_for_timeout(300)
        page.mouse.move(x, y)
        page.wait_for_timeout(500)
        page.mouse.click(x, y)
        page.wait_for_timeout(1500)
    assert page.url == url
    return dialogs, popups


def test_osc8_links_open_nothing_in_the_terminal_or_on_the_watch_page(
    new_page: Any,
    daphne: str,  # noqa: F811
    prod: AwsAccount,
    aws: Cloud,
) -> None:
    alice = make_user("alice", first_name="Alice", last_name="Admin")
    carol = make_user("carol", first_name="Carol", last_name="Approver")
    make_membership(alice, prod, "admin")
    make_membership(carol, prod, "admin", can_approve=True)
    grant = Grant.objects.get(request=active_request(prod, alice, carol))

    person = new_page()
    sign_in(person, daphne, "alice")
    person.goto(f"{daphne}/terminal/{grant.pk}/")
    expect(person.locator("[data-testid=terminal-status]")).to_have_text("Connected.", timeout=60_000)
    record = wait_for(lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=True).first())
    approver = new_page()
    sign_in(approver, daphne, "carol")
    approver.goto(f"{daphne}/terminal/live/{record.pk}/")
    approver.locator("[data-testid=watch-join]").click()
    expect(approver.locator("[data-testid=watch-status]")).to_have_text("Live.", timeout=15_000)

    person.locator(".xterm-helper-textarea").focus()
    person.keyboard.type(PRINT_LINKS)
    person.keyboard.press("Enter")
    expect(person.locator(".xterm-rows")).to_contain_text("JSLINK", timeout=20_000)
    expect(approver.locator("[data-testid=watch-terminal] .xterm-rows")).to_contain_text("JSLINK", timeout=20_000)

    assert _click_each_link(person, "#terminal") == ([], [])
    assert _click_each_link(approver, "[data-testid=watch-terminal]") == ([], [])
