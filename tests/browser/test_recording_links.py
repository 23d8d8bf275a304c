"""Links in a recording open nothing when clicked in the player: what a session printed is whatever
the instance chose to print, so an OSC 8 hyperlink (an https one, a javascript: one) or a bare URL
in it must not take the auditor, approver or person playing it back anywhere, as in the browser
terminal and on the watch page (test_terminal_links)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import click_each
from tests.browser.test_request_flow import sign_in
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant
from tests.terminal.test_recordings import record

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_db")]

# Two OSC 8 links and a bare URL, each on a line of its own.
HOSTILE_OUTPUT = (
    "\x1b]8;;https://evil.invalid/x\x1b\\HTTPSLINK\x1b]8;;\x1b\\\r\n"
    "\x1b]8;;javascript:alert(1)\x07JSLINK\x1b]8;;\x07\r\n"
    "see https://plain.invalid/y\r\n"
)
WORDS = ("HTTPSLINK", "JSLINK", "https://plain.invalid/y")


def _middle_of(page: Any, word: str) -> tuple[float, float]:
    """Where ``word`` is drawn in the player: the middle of its text, however the player splits it into elements."""
    box = page.evaluate(
        """(word) => {
            const term = document.querySelector("[data-testid=recording-player] .ap-term");
            const walker = document.createTreeWalker(term, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                const at = node.data.indexOf(word);
                if (at < 0) { continue; }
                const range = document.createRange();
                range.setStart(node, at);
                range.setEnd(node, at + word.length);
                const rect = range.getBoundingClientRect();
                return { x: rect.x + rect.width / 2, y: rect.y + rect.height / 2 };
            }
            return null;
        }""",
        word,
    )
    assert box is not None, f"{word} not in the player"
    return box["x"], box["y"]


def test_links_in_a_recording_open_nothing_in_the_player(
    world: World, settings: Any, tmp_path: Path, new_page: Any, live_server: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    grant = make_active_grant(world)
    session = record(
        world.requester, grant, [("o", "$ "), ("i", "cat links\r"), ("o", "cat links\r\n" + HOSTILE_OUTPUT)]
    )

    page = new_page()
    sign_in(page, live_server.url, world.auditor.username)
    page.goto(f"{live_server.url}/terminal/recordings/{session.pk}/")
    term = page.locator("[data-testid=recording-player] .ap-term")
    expect(term).to_be_attached()
    page.locator("[data-testid=recording-player] .ap-overlay-start").click()
    expect(term).to_contain_text("https://plain.invalid/y", timeout=30_000)
    # The links' targets are not on the screen, nor made into anchors.
    assert "evil.invalid" not in term.inner_text() and "alert" not in term.inner_text()
    expect(term.locator("a")).to_have_count(0)

    assert click_each(page, WORDS, lambda word: _middle_of(page, word)) == []
