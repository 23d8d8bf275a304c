"""What used to be inline handlers works from the portal's static script, under the CSP (the
new_page fixture fails the test on any violation)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_db")]


def test_the_status_filter_submits_itself(new_page: Any, live_server: Any) -> None:
    make_user("alice")
    page = new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_login", "alice")
    page.fill("#id_password", "pw-alice")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("My access requests")
    page.select_option("select[name=status]", "pending")
    expect(page).to_have_url(f"{live_server.url}/requests/?status=pending")
    expect(page.locator("select[name=status]")).to_have_value("pending")
