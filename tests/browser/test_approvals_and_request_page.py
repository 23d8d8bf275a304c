"""Approvers see work arrive without reloading; administrator rights stand out; the extend control
is one line and goes when nothing is left to extend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.browser.test_request_flow import sign_in
from tests.factories import make_account, make_instance, make_membership, make_user

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_db")]


@pytest.fixture
def people() -> dict[str, Any]:
    account = make_account()
    alice = make_user("alice", first_name="Alice")
    bob = make_user("bob", first_name="Bob")
    make_membership(alice, account, "admin")
    make_membership(bob, account, "admin", can_approve=True)
    return {
        "account": account,
        "alice": alice,
        "bob": bob,
        "web": make_instance(account, "web-1"),
        "db": make_instance(account, "db-1"),
    }


def _ask(people: dict[str, Any], instance: str, **fields: Any) -> AccessRequest:
    return services.access_request_create(
        requester=fields.pop("requester", people["alice"]),
        account=people["account"],
        instances=[people[instance]],
        reason=fields.pop("reason", "CPU alarm"),
        **fields,
    )


def test_the_queue_and_the_nav_count_follow_new_and_withdrawn_requests(
    new_page: Any, live_server: Any, people: dict[str, Any]
) -> None:
    bob = new_page()
    sign_in(bob, live_server.url, "bob")
    count = bob.locator("[data-testid=approvals-count]")
    expect(count).to_be_hidden()  # nothing waits: no number
    bob.click("nav >> text=Approvals")
    expect(bob.locator("[data-testid=approval-queue]")).to_contain_text("Nothing waits for you.")
    marker = bob.evaluate("() => { window.notReloaded = true; return window.notReloaded; }")
    assert marker

    # Alice asks, with administrator rights: the row arrives by itself, badge and all, and the count says 1.
    wanted = _ask(people, "web", reason="Disk full on web-1", admin_rights=True)
    row = bob.locator(f"tr[data-request='{wanted.pk}']")
    expect(row).to_contain_text("Disk full on web-1", timeout=15_000)
    badge = row.locator("[data-testid=admin-rights-badge]")
    expect(badge).to_have_text("Administrator rights")
    expect(badge).to_have_css("background-color", "rgb(254, 240, 199)")
    expect(count).to_have_text("1 waiting", timeout=15_000)
    expect(count).to_be_visible()

    # Her own request never counts for an approver; a second of hers does.
    _ask(people, "db", requester=people["bob"], reason="Bob's own")
    second = _ask(people, "db", reason="Second one")
    expect(bob.locator(f"tr[data-request='{second.pk}']")).to_be_visible(timeout=15_000)
    expect(count).to_have_text("2 waiting", timeout=15_000)
    expect(bob.locator('tr:has-text("Bob\'s own")')).to_have_count(0)

    # Withdrawn elsewhere: it leaves the queue and the count, still without a reload.
    services.access_request_cancel(access_request=wanted, actor=people["alice"])
    expect(row).to_have_count(0, timeout=15_000)
    expect(count).to_have_text("1 waiting", timeout=15_000)
    assert bob.evaluate("() => window.notReloaded === true")

    # The request page shows the same badge.
    bob.goto(f"{live_server.url}/requests/{second.pk}/")
    expect(bob.locator("[data-testid=admin-rights-badge]")).to_have_count(0)
    bob.goto(f"{live_server.url}/requests/{wanted.pk}/")
    expect(bob.locator("[data-testid=admin-rights-badge]")).to_have_text("Administrator rights")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_extend_control_is_one_line_and_goes_at_twelve_hours(
    browser: Any, csp_watch: Any, live_server: Any, people: dict[str, Any], width: int
) -> None:
    access_request = _ask(people, "web")
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE,
        activated_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
        duration=timedelta(hours=11),
    )
    context = csp_watch.attach(browser.new_context(viewport={"width": width, "height": 900}))
    try:
        page = context.new_page()
        sign_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/requests/{access_request.pk}/")
        form = page.locator("[data-testid=extend-form]")
        expect(form).to_be_visible()
        select, button = form.locator("select").bounding_box(), form.locator("button").bounding_box()
        assert select and button
        # Side by side on one line: the button right of the select, their middles level.
        assert button["x"] >= select["x"] + select["width"]
        assert abs((select["y"] + select["height"] / 2) - (button["y"] + button["height"] / 2)) < 4
        assert select["width"] < 260
        # Only what fits in the 12 h budget is offered (one hour left here).
        assert form.locator("option").all_inner_texts() == ["15 minutes", "30 minutes", "1 hour"]

        page.select_option("#id_minutes", "60")
        page.click("[data-testid=extend-form] button")
        expect(page.locator(".flash")).to_contain_text("extended by 60 minutes")
        expect(page.locator("[data-testid=extend-form]")).to_have_count(0)  # 12 h reached: nothing to extend
        expect(page.locator("a:has-text('Complete now')")).to_be_visible()
    finally:
        context.close()
    csp_watch.assert_none()
