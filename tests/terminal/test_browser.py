"""The terminal in headless Chromium: xterm.js over a real daphne (WebSockets need ASGI, and
pytest-django's live_server is WSGI), against the real worker and devcloud."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from accounts.models import AwsAccount
from requests_app import services as request_services
from requests_app.models import Grant
from terminal.models import TerminalSession
from tests.browser.csp import CspWatch
from tests.factories import make_membership, make_user
from tests.stack import Cloud, WorkerProcess, daphne_running, wait_for
from tests.terminal.helpers import active_request

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


# As tests/browser/conftest.py (not imported: it allows async-unsafe ORM calls process-wide).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]


@pytest.fixture
def daphne(worker: WorkerProcess, tmp_path: Path) -> Iterator[str]:
    env = {**worker.env, "PASSPORT_VAR_DIR": str(tmp_path / "var"), "DJANGO_ALLOW_ASYNC_UNSAFE": ""}
    with daphne_running(env, tmp_path / "daphne.log") as url:
        yield url


def test_terminal_in_the_browser(daphne: str, aws: Cloud) -> None:
    from playwright.sync_api import expect, sync_playwright

    item = next(account for account in aws.manifest["accounts"] if account["name"] == "Acme Production")
    prod = AwsAccount.objects.create(
        account_id=item["id"], name=item["name"], role_arn=item["role_arn"], regions=item["regions"]
    )
    assert not request_services.inventory_sync(account=prod).errors
    alice, approver = make_user("alice"), make_user("approver")
    make_user("dave", is_auditor=True)  # the reviewer who plays the recording back
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, alice, approver)
    grant = Grant.objects.get(request=access_request)

    # Playwright's sync API runs an event loop in this thread: the ORM is called from another one.
    with sync_playwright() as playwright, ThreadPoolExecutor(1) as orm:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        watch = CspWatch()
        try:
            _drive(browser, expect, orm, daphne, access_request, grant, alice, watch)
        finally:
            browser.close()
            # The terminal and the player work under the Content-Security-Policy and break none of it
            # (checked even when a step failed: a violation is the likeliest reason for it).
            watch.assert_none()


def _drive(
    browser: Any,
    expect: Any,
    orm: ThreadPoolExecutor,
    base: str,
    access_request: Any,
    grant: Grant,
    alice: Any,
    watch: CspWatch,
) -> None:
    daphne = base
    page = watch.attach(browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    page.goto(f"{daphne}/accounts/login/")
    page.fill("#id_login", "alice")
    page.fill("#id_password", "pw-alice")
    page.click("button[type=submit]")
    page.goto(f"{daphne}/requests/{access_request.pk}/")
    href = page.locator("[data-testid=open-terminal]").get_attribute("href")
    assert href == f"/terminal/{grant.pk}/"
    page.goto(f"{daphne}{href}")
    expect(page.locator("[data-testid=terminal-status]")).to_have_text("Connected.", timeout=60_000)
    page.locator(".xterm-helper-textarea").focus()
    # The prompt already shows the username: wait for whoami's answer behind a marker.
    page.keyboard.type("echo u=$(whoami)")
    page.keyboard.press("Enter")
    expect(page.locator(".xterm-rows")).to_contain_text(f"u={grant.username}", timeout=20_000)

    def complete() -> None:
        try:
            request_services.access_request_complete(access_request=access_request, actor=alice)
        finally:
            connection.close()

    orm.submit(complete).result()
    expect(page.locator("[data-testid=terminal-status]")).to_contain_text("completed", timeout=5_000)

    def sealed() -> TerminalSession:
        try:
            return wait_for(
                lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(),
                timeout=30,
                what="the sealed recording",
            )
        finally:
            connection.close()

    terminal_session = orm.submit(sealed).result()
    _review_recording(browser, expect, daphne, grant, terminal_session, watch)


def _review_recording(
    browser: Any, expect: Any, daphne: str, grant: Grant, terminal_session: TerminalSession, watch: CspWatch
) -> None:
    """An auditor finds the terminal in the Logbook, follows its link and plays the recording at 4x."""
    page = watch.attach(browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    page.goto(f"{daphne}/accounts/login/")
    page.fill("#id_login", "dave")
    page.fill("#id_password", "pw-dave")
    page.click("button[type=submit]")
    page.goto(f"{daphne}/logbook/?action=terminal.ended")
    link = page.locator("[data-testid=recording-link]")
    expect(link).to_have_count(1)
    link.click()
    expect(page).to_have_url(f"{daphne}/terminal/recordings/{terminal_session.pk}/")
    expect(page.locator("[data-testid=recording-verified]")).to_be_visible()
    expect(page.locator("[data-testid=recording-sha256]")).to_have_text(terminal_session.recording_sha256)
    term = page.locator("[data-testid=recording-player] .ap-term")
    expect(term).to_be_attached()
    expect(term).not_to_contain_text(grant.username)  # nothing played yet
    page.select_option("[data-testid=recording-speed]", "4")
    page.locator("[data-testid=recording-player] .ap-overlay-start").click()
    # Played back by the player itself: the command typed, then its answer on the next line.
    expect(term).to_contain_text(re.compile(r"whoami\)\s*u=" + re.escape(grant.username)), timeout=60_000)


def _paste(page: Any, count: int) -> None:
    """Paste ``count`` numbers ("0000000 0000001 ..."), as the browser pastes the clipboard into xterm.js."""
    page.evaluate(
        """(count) => {
            const text = Array.from({ length: count }, (_, i) => String(i).padStart(7, "0") + " ").join("");
            const data = new DataTransfer();
            data.setData("text/plain", text);
            document.querySelector(".xterm-helper-textarea").dispatchEvent(
                new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
        }""",
        count,
    )


def test_a_long_paste_waits_in_the_page_until_the_shell_reads_and_ctrl_c_drops_what_waits(
    daphne: str, prod: AwsAccount
) -> None:
    """The page keeps to the input window (terminal/flow.py): a paste larger than the instance takes
    while its program sleeps waits in the page, which says so, and goes on once the program reads, every
    byte of it; Ctrl-C drops what still waits in the page (the shell would otherwise run it)."""
    from playwright.sync_api import expect, sync_playwright

    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    grant = Grant.objects.get(request=active_request(prod, alice, approver))
    count = 512 * 1024  # 4 MiB: past sshd's window (2 MiB) and the page's (1 MiB)
    size = count * 8
    digest = hashlib.sha256("".join(f"{number:07d} " for number in range(count)).encode()).hexdigest()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        watch = CspWatch()
        try:
            page = watch.attach(browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
            page.goto(f"{daphne}/accounts/login/")
            page.fill("#id_login", "alice")
            page.fill("#id_password", "pw-alice")
            page.click("button[type=submit]")
            page.goto(f"{daphne}/terminal/{grant.pk}/")
            status, rows = page.locator("[data-testid=terminal-status]"), page.locator(".xterm-rows")
            expect(status).to_have_text("Connected.", timeout=60_000)
            page.locator(".xterm-helper-textarea").focus()

            page.keyboard.type(f"stty raw -echo; sleep 8; head -c {size} | sha256sum; stty sane; echo ok$((6*7))")
            page.keyboard.press("Enter")
            page.wait_for_timeout(1000)
            _paste(page, count)
            expect(status).to_contain_text("not reading input yet", timeout=10_000)
            expect(rows).to_contain_text(digest, timeout=120_000)
            expect(rows).to_contain_text("ok42", timeout=20_000)
            expect(status).to_have_text("Connected.")

            # Again, and Ctrl-C while the paste waits: the rest is dropped, and the page says how much.
            page.keyboard.type("stty raw -echo; sleep 8; timeout 4 cat >/dev/null; stty sane; echo after$((6*7))")
            page.keyboard.press("Enter")
            page.wait_for_timeout(1000)
            _paste(page, count)
            expect(status).to_contain_text("not reading input yet", timeout=10_000)
            page.keyboard.press("Control+C")
            expect(rows).to_contain_text(re.compile(r"Ctrl-C: \d+ characters of input the instance had not"))
            expect(status).to_have_text("Connected.")
            expect(rows).to_contain_text("after42", timeout=60_000)
        finally:
            browser.close()
            watch.assert_none()
