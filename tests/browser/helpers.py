"""What the browser tests do as a person, or as another site, would: open a terminal, click on text
a page shows (links printed by an instance: they must open nothing), and arrive from a page of
another site."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from playwright.sync_api import expect

from requests_app.models import Grant
from tests.browser.test_request_flow import sign_in


def terminal_connected(page: Any, base: str, grant: Grant) -> None:
    """The grant's requester (``alice``) signs in and opens its browser terminal, connected."""
    sign_in(page, base, "alice")
    page.goto(f"{base}/terminal/{grant.pk}/")
    expect(page.locator("[data-testid=terminal-status]")).to_have_text("Connected.", timeout=60_000)


def click_each(page: Any, words: Iterable[str], middle_of: Callable[[str], tuple[float, float]]) -> list[Any]:
    """Hover over the middle of each word (``middle_of`` says where it is drawn), then click it and
    Ctrl+click it, as a person following a link would; the dialogs and new pages that made. The page
    itself must not have gone anywhere."""
    opened: list[Any] = []

    def dismiss(dialog: Any) -> None:
        opened.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.context.on("page", lambda new_page: opened.append(new_page))
    url = page.url
    for word in words:
        x, y = middle_of(word)
        page.mouse.move(x - 3, y)
        page.wait_for_timeout(300)
        page.mouse.move(x, y)
        page.wait_for_timeout(500)
        page.mouse.click(x, y)
        page.wait_for_timeout(1000)
        page.keyboard.down("Control")  # what opens a link in xterm.js's WebLinksAddon, and in many terminals
        page.mouse.click(x, y)
        page.keyboard.up("Control")
        page.wait_for_timeout(1000)
    assert page.url == url
    return opened


def sent_by_another_site(page: Any, target: str, *, shows: str = "") -> None:
    """``page`` opens a page of another site (http://evil.test/, served here) that shows ``shows``
    (HTML) and sends the browser on to ``target``, as a link in a mail or a chat would."""
    page.route(
        "http://evil.test/**",
        lambda route: route.fulfill(
            status=200, content_type="text/html", body=f"{shows}<script>location.href='{target}'</script>"
        ),
    )
    page.goto("http://evil.test/")
