"""The newcomer's path in a real browser: sign in, ask, approve as someone else, watch both
instances become ready, extend, complete, and find every step in the Logbook."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import AwsAccount
from requests_app import services
from requests_app.models import AccessRequest
from tests.factories import make_membership, make_user
from tests.stack import Cloud

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


@pytest.fixture
def demo(aws: Cloud) -> AwsAccount:
    item = next(account for account in aws.manifest["accounts"] if account["name"] == "Acme Production")
    account = AwsAccount.objects.create(
        account_id=item["id"], name=item["name"], role_arn=item["role_arn"], regions=item["regions"]
    )
    assert not services.inventory_sync(account=account).errors
    make_membership(make_user("alice", first_name="Alice"), account, "admin")
    make_membership(make_user("bob", first_name="Bob"), account, "admin", can_approve=True)
    make_user("dave", is_auditor=True)
    return account


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_login", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("My access requests")


def test_request_approve_ready_extend_complete_and_logbook(
    new_page: Any, live_server: Any, demo: AwsAccount, aws: Cloud, tmp_path: Any
) -> None:
    base = live_server.url
    alice = new_page()
    sign_in(alice, base, "alice")
    alice.click("text=+ New request")
    # The picker searches as one types (htmx) and shows why an instance cannot be chosen.
    alice.fill("#instance-search", "legacy")
    expect(alice.locator("#picker")).to_contain_text("2.3.672.0")
    alice.fill("#instance-search", "")
    expect(alice.locator("#picker")).to_contain_text("db-1")
    alice.check("label:has-text('web-1') input")
    alice.check("label:has-text('db-1') input")
    alice.fill("#id_reason", "CPU alarm on the application server")
    alice.fill("#id_ticket", "INC-4211")
    alice.click("text=Submit request")
    expect(alice.locator("[data-testid=request-status]")).to_have_text("Pending approval")
    request_id = int(alice.url.rstrip("/").rsplit("/", 1)[1])
    # Nobody approves their own request: the button is not even offered.
    expect(alice.locator("button:has-text('Approve')")).to_have_count(0)
    alice.screenshot(path=str(tmp_path / "pending.png"))

    bob = new_page()
    sign_in(bob, base, "bob")
    bob.click("nav >> text=Approvals")
    expect(bob.locator("table")).to_contain_text("CPU alarm")
    bob.click(f"tr:has(a:text('#{request_id}')) >> button:has-text('Approve')")
    expect(bob.locator(".flash")).to_contain_text("approved")

    # Alice's page updates by itself while the users are created.
    expect(alice.locator("[data-testid=request-status]")).to_have_text("Active", timeout=60_000)
    expect(alice.locator("[data-testid=grant-status]:has-text('Ready')")).to_have_count(2, timeout=60_000)
    alice.screenshot(path=str(tmp_path / "active.png"))

    alice.select_option("#id_minutes", "60")
    alice.click("button:has-text('Extend')")
    expect(alice.locator(".flash")).to_contain_text("extended by 60 minutes")
    assert AccessRequest.objects.get(pk=request_id).total_duration.total_seconds() == 2 * 3600

    # Completing asks first, saying what it ends.
    alice.click("a:has-text('Complete now')")
    expect(alice.locator("[data-testid=confirm-effect]")).to_contain_text("every open terminal")
    alice.click("button:has-text('Complete now')")
    expect(alice.locator("[data-testid=request-status]")).to_have_text("Completed", timeout=60_000)
    expect(alice.locator("[data-testid=grant-status]:has-text('Removed')")).to_have_count(2)

    dave = new_page()
    sign_in(dave, base, "dave")
    dave.goto(f"{base}/logbook/?request={request_id}")
    table = dave.locator("table")
    for action in (
        "request.created",
        "request.approved",
        "grant.ready",
        "request.active",
        "request.extended",
        "request.completing",
        "grant.removed",
        "request.completed",
    ):
        expect(table).to_contain_text(action)
    dave.screenshot(path=str(tmp_path / "logbook.png"), full_page=True)
