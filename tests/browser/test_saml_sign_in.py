"""SAML sign-in and single logout in a real browser, against the demo identity providers.

The demo IdP (devcloud/idp/) runs on its own port, as in `scripts/demo`; Chromium follows
the redirects and the auto-posted form across the two origins exactly as with a real IdP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from playwright.sync_api import expect

from accounts.models import AwsAccount, Membership, User
from devcloud.idp import DemoServer
from tests.factories import make_account

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("live_db")]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def account() -> AwsAccount:
    return make_account()


@pytest.fixture
def idps(live_server: Any, account: AwsAccount, settings: Any) -> Iterator[DemoServer]:
    server = make_server("127.0.0.1", 0, lambda environ, start_response: [], handler_class=_Quiet)
    app = DemoServer(f"http://127.0.0.1:{server.server_port}", live_server.url, [account.account_id])
    server.set_app(app)  # the IdP's URLs carry the port it was given
    settings.PASSPORT_SAML_IDPS = app.passport_config()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    server.server_close()


def test_sign_in_through_each_identity_store_and_sign_out_everywhere(
    new_page: Any, live_server: Any, idps: DemoServer, account: AwsAccount
) -> None:
    page = new_page()
    page.goto(f"{live_server.url}/requests/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/requests/")
    page.click("text=Sign in with Customer SSO (demo)")
    expect(page.locator("h1")).to_have_text("Customer SSO (demo)")  # the IdP's own page
    page.click("text=Sign in as Carol Customer")
    expect(page.locator("h1")).to_have_text("My access requests")
    expect(page).to_have_url(f"{live_server.url}/requests/")

    carol = User.objects.get(email="carol@customer.example")
    assert carol.identity_store == User.IdentityStore.CUSTOMER
    membership = Membership.objects.get(user=carol, account=account)
    assert membership.role == Membership.Role.ADMIN and membership.can_approve
    expect(page.locator("nav")).to_contain_text("Approvals")  # the IdP's groups made her an approver

    # Single logout: Passport's LogoutRequest goes to the IdP, whose LogoutResponse comes back.
    visited: list[str] = []
    page.on("request", lambda request: visited.append(request.url) if request.is_navigation_request() else None)
    page.get_by_test_id("person-menu").click()  # Sign out is in the person menu of the top bar
    page.click("button:has-text('Sign out')")
    expect(page.locator("body")).to_contain_text("Sign in")
    assert any(url.startswith(f"{idps.base_url}/customer/slo?SAMLRequest=") for url in visited), visited
    assert any(url.startswith(f"{live_server.url}/accounts/saml/customer/sls/?SAMLResponse=") for url in visited)
    page.goto(f"{live_server.url}/requests/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/requests/")

    # The internal store: a support engineer, whose requests must name a ticket.
    page.click("text=Sign in with Support SSO (demo)")
    page.click("text=Sign in as Sam Support")
    expect(page.locator("h1")).to_have_text("My access requests")
    sam = User.objects.get(email="sam@support.passport.test")
    assert sam.identity_store == User.IdentityStore.INTERNAL
    assert sam.pk != carol.pk
