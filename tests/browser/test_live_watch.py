"""An approver watches a person's browser terminal from a second browser and ends it, in headless
Chromium against daphne, the real worker and devcloud. The Live now and watch pages are
photographed into ``$PASSPORT_LIVE_SCREENSHOTS`` (default ``build/live/``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal.models import TerminalSession
from tests.browser.helpers import sent_by_another_site, terminal_connected
from tests.browser.test_readme_walk import Screenshots
from tests.browser.test_request_flow import sign_in
from tests.stack import ROOT, wait_for
from tests.terminal.helpers import active_request, person_and_approver, watched_grant
from tests.terminal.test_browser import daphne  # noqa: F401  (the ASGI server the WebSockets need)

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def _shots() -> Screenshots:
    """``NN-<step>-<width>.png`` at 1280 and 390 pixels wide, as the README walk takes them."""
    configured = os.environ.get("PASSPORT_LIVE_SCREENSHOTS")
    return Screenshots(Path(configured) if configured else ROOT / "build" / "live")


def _type(page: Any, text: str) -> None:
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_an_approver_watches_in_a_second_browser_and_ends_the_session(
    new_page: Any,
    daphne: str,  # noqa: F811
    prod: AwsAccount,  # on devcloud (its fixture starts it)
) -> None:
    carol, grant = watched_grant(prod)
    shots = _shots()

    person = new_page()
    terminal_connected(person, daphne, grant)
    status = person.locator("[data-testid=terminal-status]")
    _type(person, "echo hello-from-$((40+2))")
    rows = person.locator(".xterm-rows")
    expect(rows).to_contain_text("hello-from-42", timeout=15_000)
    record = wait_for(lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=True).first())

    approver = new_page()
    sign_in(approver, daphne, "carol")
    approver.click("nav >> text=Live now")
    row = approver.locator(f"[data-testid=live-row][data-session='{record.pk}']")
    expect(row).to_contain_text("Alice Admin")
    expect(row).to_contain_text(grant.instance.instance_id)
    expect(row).to_contain_text("Browser")
    expect(row.locator("[data-testid=live-watching]")).to_have_text("nobody")
    shots.take(approver, "live-now")

    row.locator("[data-testid=live-watch]").click()
    # Opening the page watches nothing: the Watch button does (another site can send a browser here).
    expect(approver.locator("[data-testid=watch-status]")).to_have_text("Not watching yet.")
    approver.wait_for_timeout(1500)
    assert not LogbookEntry.objects.filter(action="session.watch_started").exists()
    approver.locator("[data-testid=watch-join]").click()
    expect(approver.locator("[data-testid=watch-join]")).to_have_count(0)
    expect(approver.locator("[data-testid=watch-status]")).to_have_text("Live.", timeout=15_000)
    watched = approver.locator("[data-testid=watch-terminal] .xterm-rows")
    expect(watched).to_contain_text("hello-from-42", timeout=10_000)  # the screen so far
    expect(approver.locator("[data-testid=watch-watching]")).to_have_text("Watching: Carol Approver", timeout=10_000)
    # The person is told, in the page and inside the terminal, never through the shell.
    expect(person.locator("[data-testid=terminal-notice]")).to_have_text(
        "Carol Approver is watching this session.", timeout=10_000
    )
    expect(rows).to_contain_text("Carol Approver is watching this session.")
    _type(person, "echo live-$((6*7))")
    expect(watched).to_contain_text("live-42", timeout=5_000)
    # More output (1.6 MiB) than the server sends unacknowledged (terminal.watch.MAX_UNACKED): the page
    # acknowledges its marks as it writes, so the watcher keeps up and stays open.
    _type(person, "seq 1 250000; echo after-$((6*7))-lines")
    expect(watched).to_contain_text("after-42-lines", timeout=60_000)
    expect(approver.locator("[data-testid=watch-status]")).to_have_text("Live.")
    # Typing on the watch page reaches nothing.
    approver.locator("[data-testid=watch-terminal]").click()
    approver.keyboard.type("echo from-the-watcher")
    approver.keyboard.press("Enter")
    shots.take(approver, "watch")
    shots.take(person, "person-told")

    # Live now shows who watches (another poll of the page).
    other = new_page()
    sign_in(other, daphne, "carol")
    other.goto(f"{daphne}/terminal/live/")
    expect(
        other.locator(f"[data-testid=live-row][data-session='{record.pk}'] [data-testid=live-watching]")
    ).to_have_text("Carol Approver")
    shots.take(other, "live-now-watched")
    other.context.close()

    # Ending needs a reason: the browser asks for one (required), and blank text is refused by the portal.
    expect(approver.locator("#id_reason")).to_have_attribute("required", "")
    approver.fill("#id_reason", "   ")
    approver.click("[data-testid=end-session]")
    expect(approver.locator("[data-testid=end-reason-error]")).to_contain_text("Say why the session is being ended")
    shots.take(approver, "end-needs-a-reason")
    approver.fill("#id_reason", "Not in the change plan <b>stop</b>")
    approver.click("[data-testid=end-session]")
    expect(approver.locator("h1")).to_have_text("Live now")
    expect(status).to_have_text("Carol Approver ended this session: Not in the change plan <b>stop</b>", timeout=5_000)
    expect(approver.locator("[data-testid=live-none]")).to_be_visible(timeout=15_000)
    shots.take(approver, "live-now-after")
    shots.take(person, "person-ended")

    assert "from-the-watcher" not in person.locator(".xterm-rows").inner_text()
    assert not shots.overflowing, f"pages wider than the window: {shots.overflowing}"
    wait_for(lambda: TerminalSession.objects.get(pk=record.pk).ended_at, timeout=20, what="the session sealed")
    record.refresh_from_db()
    assert record.end_reason.startswith("Carol Approver ended this session")
    assert "from-the-watcher" not in record.transcript_input
    entry = LogbookEntry.objects.get(action="session.terminated")
    assert entry.actor_id == carol.pk and entry.detail["reason"] == "Not in the change plan <b>stop</b>"
    assert LogbookEntry.objects.filter(action="session.watch_started", actor=carol).exists()


def test_another_site_cannot_make_an_approver_join_a_moderated_session(
    new_page: Any,
    daphne: str,  # noqa: F811
    prod: AwsAccount,  # on devcloud (its fixture starts it)
) -> None:
    """A moderated session runs only while an approver watches. A page of another site sending the
    approver's browser to the watch page (the session cookie is SameSite=Lax) joins nothing: the
    page asks whether to continue, and the watch page itself joins only on its button."""
    alice, carol = person_and_approver(prod)
    AwsAccount.objects.filter(pk=prod.pk).update(require_session_join=True)
    grant = Grant.objects.get(request=active_request(prod, alice, carol))

    person = new_page()
    sign_in(person, daphne, "alice")
    person.goto(f"{daphne}/terminal/{grant.pk}/")
    record = wait_for(lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=True).first(), timeout=60)
    status = person.locator("[data-testid=terminal-status]")
    expect(status).to_contain_text("Waiting for an approver", timeout=60_000)

    approver = new_page()
    sign_in(approver, daphne, "carol")
    watch_url = f"{daphne}/terminal/live/{record.pk}/"
    sent_by_another_site(approver, watch_url, shows="<p>cats</p>")
    expect(approver.locator("[data-testid=cross-site]")).to_contain_text("Another site sent you here to watch")
    approver.wait_for_timeout(3000)
    assert not LogbookEntry.objects.filter(actor_id=carol.pk, action="session.watch_started").exists()
    _type(person, "echo moderated-$((6*7))")
    person.wait_for_timeout(2000)
    assert "moderated-42" not in person.locator(".xterm-rows").inner_text()
    expect(status).to_contain_text("Waiting for an approver")

    # Her own click continues to the watch page, which still waits for her to join.
    approver.locator("[data-testid=cross-site-continue]").click()
    expect(approver.locator("[data-testid=watch-join]")).to_have_text("Join and watch")
    expect(approver.locator("[data-testid=watch-status]")).to_contain_text("Not watching yet.")
    approver.wait_for_timeout(1500)
    assert not LogbookEntry.objects.filter(actor_id=carol.pk, action="session.watch_started").exists()
    approver.locator("[data-testid=watch-join]").click()
    expect(approver.locator("[data-testid=watch-status]")).to_have_text("Live.", timeout=15_000)
    expect(status).to_have_text("Connected.", timeout=15_000)
    _type(person, "echo joined-$((6*7))")  # what was typed while it waited was dropped (terminal.session_input)
    expect(person.locator(".xterm-rows")).to_contain_text("joined-42", timeout=15_000)
    entry = LogbookEntry.objects.get(actor_id=carol.pk, action="session.watch_started")
    assert entry.detail.get("moderator") is True
