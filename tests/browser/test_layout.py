"""Every page of the portal, for each kind of person, on phones (375 and 390 px) and a desktop (1280 px):
nothing wider than the screen, a title that names the page, the nav behind a Menu button on the
phone, and a keyboard focus ring everywhere (templates/base.html, static/css/passport.css).

With PASSPORT_SCREENSHOT_DIR set, each page is also saved there as <width>-<person>-<page>.png.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from requests_app import services as request_services
from requests_app.models import Instance
from sshca.services import ca_keys_ensure
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant
from tests.terminal.test_recordings import record

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_db")]

SMALL_PHONE, PHONE, DESKTOP = 375, 390, 1280
TITLE = re.compile(r"\S.* · Passport")


@dataclass
class Pages:
    everyone: list[str]
    requester: list[str]
    approver: list[str]
    auditor: list[str]
    signed_out: list[str]


@pytest.fixture
def pages(world: World, settings: Any, tmp_path: Path) -> Pages:
    """A pending request (the approver's queue), an active one with a ready grant (its terminal),
    and a sealed recording: every kind of page has something on it."""
    settings.MEDIA_ROOT = tmp_path / "media"
    ca_keys_ensure()
    pending = request_services.access_request_create(
        requester=world.requester,
        account=world.prod,
        instances=[world.db, world.windows],
        reason="Disk alarm on the database host, checking the volume and the slow query log",
        ticket="OPS-4711",
        admin_rights=True,
    )
    grant = make_active_grant(world)
    active = grant.request
    session = record(world.requester, grant, [("o", "$ "), ("i", "cat notes\r"), ("o", "cat notes\r\nall fine\r\n")])
    return Pages(
        everyone=[
            "/requests/",
            f"/requests/{active.pk}/",
            "/ca/",
            "/cli/device/",
            "/accounts/2fa/",
            "/accounts/password/change/",
            "/accounts/email/",
            "/accounts/logout/",
            "/no/such/page/",
        ],
        requester=[
            "/requests/new/",
            f"/requests/{active.pk}/complete/",
            f"/requests/{pending.pk}/cancel/",
            f"/terminal/{grant.pk}/",
            f"/terminal/recordings/{session.pk}/",
        ],
        approver=[
            "/requests/approvals/",
            "/requests/inventory/",
            f"/requests/{pending.pk}/",
            f"/requests/{pending.pk}/reject/",
            "/terminal/recordings/",
            "/terminal/recordings/?q=notes",
            f"/terminal/recordings/{session.pk}/",
        ],
        auditor=[
            "/logbook/",
            "/terminal/recordings/?q=fine",
            f"/terminal/recordings/{session.pk}/",
            f"/requests/{pending.pk}/",
        ],
        signed_out=["/accounts/login/", "/accounts/password/reset/"],
    )


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_login", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("My access requests")


def look_at(page: Any, base: str, url: str, width: int, who: str) -> list[str]:
    """What is wrong with this page at this width (nothing: an empty list)."""
    page.goto(f"{base}{url}")
    page.wait_for_load_state("load")
    page.wait_for_timeout(150)  # scripts that size things after load (the terminal, the player)
    problems = []
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    if scroll_width > width:
        wide = page.evaluate(
            """(width) => [...document.querySelectorAll('body *')]
                 .filter((el) => el.getBoundingClientRect().right > width + 1 && !el.closest('.table-wrap'))
                 .slice(0, 3).map((el) => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''))""",
            width,
        )
        problems.append(f"{who} {url} at {width} px: {scroll_width} px wide ({', '.join(wide)})")
    title = page.title()
    if not TITLE.fullmatch(title) or title.startswith("Passport ·"):
        problems.append(f"{who} {url}: title {title!r}")
    shots = os.environ.get("PASSPORT_SCREENSHOT_DIR")
    if shots:
        name = re.sub(r"[^a-z0-9]+", "-", url.lower()).strip("-") or "home"
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"{width}-{who}-{name}.png"), full_page=True)
    return problems


@pytest.mark.parametrize("width", [SMALL_PHONE, PHONE, DESKTOP])
def test_every_page_fits_the_screen_and_has_a_title(
    width: int, world: World, pages: Pages, new_page: Any, live_server: Any
) -> None:
    base = live_server.url
    problems: list[str] = []
    page = new_page()
    page.set_viewport_size({"width": width, "height": 844})
    for url in pages.signed_out:
        problems += look_at(page, base, url, width, "anonymous")
    for person, own in [
        (world.requester, pages.requester),
        (world.approver, pages.approver),
        (world.auditor, pages.auditor),
    ]:
        page = new_page()
        page.set_viewport_size({"width": width, "height": 844})
        sign_in(page, base, person.username)
        for url in pages.everyone + own:
            problems += look_at(page, base, url, width, person.username)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("width", [SMALL_PHONE, DESKTOP])
def test_a_name_tag_with_no_break_point_does_not_widen_a_page(
    width: int, world: World, settings: Any, tmp_path: Path, new_page: Any, live_server: Any
) -> None:
    """An EC2 Name tag is up to 255 characters, written by anyone with ec2:CreateTags: one with no
    break point wraps inside its box on every page that names the instance, the picker's chip too."""
    settings.MEDIA_ROOT = tmp_path / "media"
    ca_keys_ensure()
    Instance.objects.filter(pk__in=[world.db.pk, world.web.pk]).update(name="N" * 255)
    pending = request_services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.db], reason="disk", ticket=""
    )
    grant = make_active_grant(world)
    record(world.requester, grant, [("o", "$ "), ("i", "ls\r"), ("o", "ls\r\n")])
    base, problems = live_server.url, []
    for person, urls in [
        (
            world.requester,
            [
                "/requests/new/",
                "/requests/",
                f"/requests/{pending.pk}/",
                f"/requests/{pending.pk}/cancel/",
                f"/requests/{grant.request.pk}/",
                f"/requests/{grant.request.pk}/complete/",
                f"/terminal/{grant.pk}/",
            ],
        ),
        (world.approver, ["/requests/approvals/", "/requests/inventory/", f"/requests/{pending.pk}/reject/"]),
        (world.auditor, ["/logbook/", "/terminal/recordings/?q=ls"]),
    ]:
        page = new_page()
        page.set_viewport_size({"width": width, "height": 844})
        sign_in(page, base, person.username)
        for url in urls:
            problems += look_at(page, base, url, width, person.username)
    assert not problems, "\n".join(problems)
    page = new_page()
    page.set_viewport_size({"width": width, "height": 844})
    sign_in(page, base, world.requester.username)
    # Wrapped, not cut: the whole name is still on the confirm page.
    page.goto(f"{base}/requests/{pending.pk}/cancel/")
    expect(page.locator("[data-testid=confirm-cancel] strong")).to_have_text("N" * 255)
    page.goto(f"{base}/requests/new/")
    page.locator("#picker input[type=checkbox]").first.check()
    expect(page.locator(".picker-selected .chip")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if shots := os.environ.get("PASSPORT_SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(shots) / f"{width}-alice-requests-new-chosen.png"), full_page=True)


def test_on_a_phone_the_nav_folds_behind_the_menu_button(world: World, new_page: Any, live_server: Any) -> None:
    page = new_page()
    page.set_viewport_size({"width": PHONE, "height": 844})
    sign_in(page, live_server.url, world.approver.username)
    nav = page.get_by_role("navigation", name="Main")
    toggle = page.locator("[data-nav-toggle]")
    expect(nav).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(nav.get_by_role("link", name="Approvals")).to_be_visible()
    page.get_by_test_id("person-menu").click()
    expect(page.get_by_role("link", name="Two-factor authentication")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE
    page.keyboard.press("Escape")  # one thing at a time: the person menu, then the nav
    expect(page.get_by_role("link", name="Two-factor authentication")).to_be_hidden()
    expect(nav).to_be_visible()
    page.keyboard.press("Escape")
    expect(nav).to_be_hidden()
    expect(toggle).to_be_focused()
    nav_on_desktop = new_page()
    sign_in(nav_on_desktop, live_server.url, world.approver.username)
    expect(nav_on_desktop.locator("[data-nav-toggle]")).to_be_hidden()
    expect(nav_on_desktop.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals")).to_be_visible()


def test_the_person_menu_leads_to_two_factor_and_signs_out(world: World, new_page: Any, live_server: Any) -> None:
    page = new_page()
    sign_in(page, live_server.url, world.requester.username)
    menu = page.get_by_test_id("person-menu")
    expect(menu).to_contain_text("Alice Admin")
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    menu.click()
    page.get_by_role("link", name="Two-factor authentication").click()
    expect(page).to_have_title("Two-Factor Authentication · Passport")
    expect(page.locator("header.topbar")).to_be_visible()
    page.get_by_test_id("person-menu").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def focus_ring(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => { const el = document.activeElement, style = getComputedStyle(el);
                   return {tag: el.tagName.toLowerCase(), text: (el.textContent || el.name || '').trim(),
                           style: style.outlineStyle, width: parseFloat(style.outlineWidth)}; }"""
    )


def tab_to(page: Any, selector: str, presses: int = 60) -> dict[str, Any]:
    """Press Tab until ``selector`` has the keyboard focus; its focus ring."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(selector) => document.activeElement.matches(selector)", selector):
            return focus_ring(page)
    raise AssertionError(f"Tab never reached {selector}")


def test_keyboard_focus_is_visible_everywhere(world: World, pages: Pages, new_page: Any, live_server: Any) -> None:
    page = new_page()
    sign_in(page, live_server.url, world.requester.username)
    rings = {
        "nav link": tab_to(page, "nav.nav a"),
        "person menu": tab_to(page, "summary[data-testid=person-menu]"),
        "table link": tab_to(page, ".table-wrap a"),
        "filter": tab_to(page, "select[name=status]"),
    }
    page.goto(f"{live_server.url}/requests/new/")
    rings["field"] = tab_to(page, "#instance-search")
    rings["checkbox"] = tab_to(page, "#picker input[type=checkbox]")
    page.keyboard.press("Space")
    expect(page.locator(".chip-remove")).to_have_count(1)
    rings["chip"] = tab_to(page, ".chip-remove")
    rings["button"] = tab_to(page, "button[type=submit]")
    # Chromium's own ring is outline-style "auto", thin and dark: unseen on the dark top bar.
    weak = {name: ring for name, ring in rings.items() if ring["style"] in ("none", "auto") or ring["width"] < 2}
    assert not weak, weak
