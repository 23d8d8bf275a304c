"""The create form's instance picker and the confirmation of decisive actions, in Chromium under
the CSP (the new_page fixture fails the test on any violation)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.factories import make_account, make_instance, make_membership, make_user

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_db")]


def _sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_login", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("My access requests")


def test_a_selection_survives_a_search(new_page: Any, live_server: Any) -> None:
    account = make_account()
    alice = make_user("alice")
    make_membership(alice, account, "admin")
    web, db = make_instance(account, "web-1"), make_instance(account, "db-1")
    make_instance(account, "cache-1")
    page = new_page()
    _sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/requests/new/")
    summary = page.locator(".picker-selected")
    expect(summary).to_contain_text("Nothing selected yet.")
    page.check("label:has-text('web-1') input")
    expect(summary.locator("[data-selected]")).to_have_text(["web-1"])
    page.fill("#instance-search", "db")
    expect(page.locator("#picker label")).to_have_count(1)
    expect(summary.locator("[data-selected]")).to_have_text(["web-1"])
    page.check("label:has-text('db-1') input")
    expect(summary.locator("[data-selected]")).to_have_text(["db-1", "web-1"])
    # A remove button drops one without a search; add it back by searching again.
    page.fill("#instance-search", "cache")
    page.check("label:has-text('cache-1') input")
    expect(summary.locator("[data-selected]")).to_have_count(3)
    page.click("button[aria-label='Remove cache-1']")
    expect(summary.locator("[data-selected]")).to_have_text(["db-1", "web-1"])
    page.fill("#id_reason", "CPU alarm on the application server")
    page.click("text=Submit request")
    expect(page.locator("[data-testid=request-status]")).to_have_text("Pending approval")
    created = AccessRequest.objects.get()
    assert {grant.instance_id for grant in created.grants.all()} == {web.pk, db.pk}


def test_a_rejection_is_confirmed_with_a_reason(new_page: Any, live_server: Any) -> None:
    account = make_account()
    alice, bob = make_user("alice"), make_user("bob")
    make_membership(alice, account, "admin")
    make_membership(bob, account, "admin", can_approve=True)
    access_request = services.access_request_create(
        requester=alice, account=account, instances=[make_instance(account, "web-1")], reason="Disk full", ticket=""
    )
    page = new_page()
    _sign_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/requests/approvals/")
    page.click("a:has-text('Reject')")
    expect(page.locator("[data-testid=confirm-effect]")).to_contain_text("no user is created")
    page.click("button:has-text('Reject request')")  # no reason yet: the browser asks for one
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    page.fill("textarea[name=note]", "Use the staging copy first")
    page.click("button:has-text('Reject request')")
    expect(page.locator("[data-testid=request-status]")).to_have_text("Rejected")
    expect(page.locator("[data-testid=decision-note]")).to_contain_text("Use the staging copy first")
    expect(page.locator("[data-testid=grant-status]")).to_have_text(["Not provisioned"])


def test_the_ticket_field_says_it_is_required_of_a_support_engineer(new_page: Any, live_server: Any) -> None:
    """Support engineers are refused without a ticket: the label says "(required)", a line says why,
    and leaving it blank is the field's own error under it."""
    account = make_account()
    sam = make_user("sam", identity_store=User.IdentityStore.INTERNAL)
    make_membership(sam, account, "admin")
    make_instance(account, "web-1")
    page = new_page()
    _sign_in(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/requests/new/")
    expect(page.locator("label[for=id_ticket]")).to_have_text("Ticket reference (required)")
    expect(page.locator("#id_ticket")).to_have_attribute("aria-describedby", "ticket-help")
    expect(page.locator("#ticket-help")).to_contain_text("support engineer")
    page.check("label:has-text('web-1') input")
    page.fill("#id_reason", "Customer asked us to check the disk")
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator("#id_ticket ~ .errorlist")).to_have_text(
        "Support engineers must name the customer's ticket this access is for."
    )
    assert not AccessRequest.objects.exists()
