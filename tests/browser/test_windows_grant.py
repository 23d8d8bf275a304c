"""A ready Windows grant in Chromium, under the CSP (the new_page fixture fails the test on any
violation): the password is revealed and copied with its button, or selected for copying by hand
where the clipboard cannot be used; the Remote Desktop details are on the page."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.passwords import seal_password
from tests.factories import make_account, make_instance, make_membership, make_user

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_db")]

PASSWORD = "Rdp-Pass-7f3a-9Qz!"
HOSTILE = '"><img src=x onerror=alert(1)>$(reboot)'


def _ready_windows_request(name: str) -> tuple[AccessRequest, Grant]:
    account = make_account()
    alice = make_user("alice")
    make_membership(alice, account, "admin")
    windows = make_instance(account, name, platform=Instance.Platform.WINDOWS)
    access_request = services.access_request_create(
        requester=alice, account=account, instances=[windows], reason="Event log", ticket=""
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    grant = Grant.objects.select_related("instance", "request").get(request=access_request)
    Grant.objects.filter(pk=grant.pk).update(
        status=GrantStatus.READY, ready_at=now, password_sealed=seal_password(grant, PASSWORD)
    )
    grant.refresh_from_db()
    return access_request, grant


def _open_request(page: Any, base: str, access_request: AccessRequest) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_login", "alice")
    page.fill("#id_password", "pw-alice")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("My access requests")
    page.goto(f"{base}/requests/{access_request.pk}/")


def test_the_password_is_copied_and_the_rdp_details_are_shown(new_page: Any, live_server: Any) -> None:
    access_request, grant = _ready_windows_request(HOSTILE)
    page = new_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    _open_request(page, live_server.url, access_request)

    rdp = page.locator("[data-testid=rdp-details]")
    expect(rdp.locator("h2")).to_have_text(f"Remote Desktop to {HOSTILE}")  # text, not markup
    expect(rdp.locator("[data-testid=rdp-command]")).to_have_text(
        f"passport connect {grant.instance.instance_id} --request {access_request.pk}"
    )
    expect(rdp.locator("[data-testid=rdp-username]")).to_have_text(grant.username)
    expect(rdp).to_contain_text("port 3389 (Remote Desktop)")
    expect(rdp.locator("[data-testid=rdp-client]")).to_contain_text("127.0.0.1:PORT")
    assert page.locator("img[src=x]").count() == 0

    page.click("button:has-text('Show password')")
    expect(page.locator("[data-testid=windows-password]")).to_have_text(PASSWORD)
    page.click("[data-testid=copy-password]")
    expect(page.locator("[data-testid=copy-status]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == PASSWORD


def test_without_a_clipboard_the_password_is_selected_for_copying_by_hand(new_page: Any, live_server: Any) -> None:
    access_request, _ = _ready_windows_request("win-1")
    page = new_page()
    # As in a browser without the asynchronous Clipboard API (or a page served over plain HTTP).
    page.add_init_script("Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined})")
    _open_request(page, live_server.url, access_request)
    expect(page.locator("[data-testid=rdp-command]")).to_have_text(
        f"passport connect win-1 --request {access_request.pk}"
    )

    page.click("button:has-text('Show password')")
    page.click("[data-testid=copy-password]")

    status = page.locator("[data-testid=copy-status]")
    expect(status).to_contain_text("press Ctrl+C")
    expect(status).not_to_have_text("Copied")
    assert page.evaluate("window.getSelection().toString()") == PASSWORD
