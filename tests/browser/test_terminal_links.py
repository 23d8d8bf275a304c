"""OSC 8 hyperlinks printed by an instance open nothing when clicked, in the browser terminal and on
the watch page: a hostile host would otherwise put a link of its choosing (xterm.js's default asks,
then opens any https URL) in front of its person and of the approvers watching."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import AwsAccount
from terminal.models import TerminalSession
from tests.browser.helpers import click_each, terminal_connected
from tests.browser.test_request_flow import sign_in
from tests.stack import wait_for
from tests.terminal.helpers import watched_grant
from tests.terminal.test_browser import daphne  # noqa: F401  (the ASGI server the WebSockets need)

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]

# Two OSC 8 links, an https one and a javascript: one, each on a line of its own.
PRINT_LINKS = (
    "clear; printf '\\033]8;;https://evil.invalid/x\\033\\\\HTTPSLINK\\033]8;;\\033\\\\\\n"
    "\\033]8;;javascript:alert(1)\\033\\\\JSLINK\\033]8;;\\033\\\\\\n'"
)


def _click_each_link(page: Any, scope: str) -> list[Any]:
    """Hover, then click and Ctrl+click, the middle of each link's text; the dialogs and new pages that made."""

    def middle_of(text: str) -> tuple[float, float]:
        cell = page.locator(f"{scope} .xterm-rows span").filter(has_text=re.compile(f"^{text}$")).last
        box = cell.bounding_box()
        assert box is not None, f"{text} not on the screen"
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    return click_each(page, ("HTTPSLINK", "JSLINK"), middle_of)


def test_osc8_links_open_nothing_in_the_terminal_or_on_the_watch_page(
    new_page: Any,
    daphne: str,  # noqa: F811
    prod: AwsAccount,  # on devcloud (its fixture starts it)
) -> None:
    _carol, grant = watched_grant(prod)

    person = new_page()
    terminal_connected(person, daphne, grant)
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

    assert _click_each_link(person, "#terminal") == []
    assert _click_each_link(approver, "[data-testid=watch-terminal]") == []
