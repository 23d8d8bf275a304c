"""What the browser keeps of the portal's pages: nothing in its storage from htmx's history (the
Logbook's filters and pages push their URL), and nothing of the site at all after signing out
(Clear-Site-Data). A page another site sends the browser to does nothing in the person's name."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from audit.models import LogbookEntry
from requests_app import services
from tests.browser.helpers import sent_by_another_site
from tests.browser.test_request_flow import sign_in
from tests.factories import make_account, make_instance, make_membership, make_user

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_db")]

REASON = "SENSITIVE-REASON-4242"
STORED = "() => JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])"


def test_the_logbook_leaves_nothing_in_browser_storage_and_sign_out_clears_the_site(
    new_page: Any, live_server: Any
) -> None:
    make_user("dave", is_auditor=True)
    alice = make_user("alice")
    prod = make_account()
    make_membership(alice, prod, "admin")
    services.access_request_create(
        requester=alice, account=prod, instances=[make_instance(prod, "web-1")], reason=REASON
    )
    page = new_page()
    sign_in(page, live_server.url, "dave")
    page.goto(f"{live_server.url}/logbook/")
    expect(page.locator("body")).to_contain_text(REASON)
    page.fill("#id_q", "alice")  # htmx swaps the results and pushes the URL
    expect(page).to_have_url(re.compile(r"/logbook/\?(.*&)?q=alice"), timeout=10_000)
    page.go_back()  # history still works: the portal is asked for the page again
    expect(page.locator("body")).to_contain_text(REASON)
    assert REASON not in page.evaluate(STORED), "htmx's history cache holds the Logbook"
    # Anything a page did leave is cleared when the person signs out.
    page.evaluate("() => { sessionStorage.setItem('left', 'behind'); localStorage.setItem('left', 'behind'); }")
    with page.expect_response(lambda r: r.url.endswith("/accounts/logout/")) as answer:
        page.locator("[data-testid=person-menu]").click()
        page.locator("button:has-text('Sign out')").first.click()
    assert answer.value.all_headers().get("clear-site-data") == '"cache", "storage"'
    page.wait_for_url("**/accounts/login/**")
    assert "behind" not in page.evaluate(STORED)


def test_another_site_sending_the_browser_to_a_logbook_export_records_nothing(new_page: Any, live_server: Any) -> None:
    make_user("dave", is_auditor=True)
    page = new_page()
    sign_in(page, live_server.url, "dave")
    target = f"{live_server.url}/logbook/export.jsonl?q=planted-by-evil"
    sent_by_another_site(page, target)
    expect(page.locator("[data-testid=cross-site]")).to_contain_text("Another site sent you here to export the Logbook")
    assert not LogbookEntry.objects.filter(action="logbook.exported").exists()
    with page.expect_download() as download:
        page.locator("[data-testid=cross-site-continue]").click()  # the person's own click exports
    assert download.value.suggested_filename.endswith(".jsonl")
    entry = LogbookEntry.objects.get(action="logbook.exported")
    assert entry.detail["q"] == "planted-by-evil"
