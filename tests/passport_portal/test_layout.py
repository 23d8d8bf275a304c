"""The page layout (templates/base.html) around every page: allauth's pages in it, the person
menu, a title per page, the favicon, and "New request" only for people who may ask."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tests.accounts.test_mfa import password_sign_in, totp
from tests.conftest import World

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def title(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match, "no <title>"
    return " ".join(match.group(1).split())


def person_menu(html: str) -> str:
    match = re.search(r'<details class="person-menu".*?</details>', html, re.S)
    assert match, "no person menu in the top bar"
    return match.group(0)


def test_the_two_factor_page_is_in_the_passport_layout(world: World) -> None:
    html = signed_in(world.requester).get("/accounts/2fa/").content.decode()
    assert '<header class="topbar"' in html
    assert 'href="/requests/"' in html  # the nav
    menu = person_menu(html)
    assert "Alice Admin" in menu
    assert 'href="/accounts/2fa/"' in menu and "Two-factor authentication" in menu
    assert f'href="{reverse("account_change_password")}"' in menu
    assert f'href="{reverse("sshca:keys")}"' in menu
    assert f'action="{reverse("account_logout")}"' in menu and "Sign out" in menu
    assert title(html) == "Two-Factor Authentication · Passport"
    assert 'class="btn' in html  # allauth's buttons in Passport's classes


@pytest.mark.parametrize(
    "url",
    [
        "/accounts/2fa/",
        "/accounts/password/change/",
        "/accounts/logout/",
        "/accounts/reauthenticate/",
    ],
)
def test_allauth_pages_for_a_signed_in_person_use_the_layout(world: World, url: str) -> None:
    response = signed_in(world.requester).get(url)
    assert response.status_code == 200, url
    html = response.content.decode()
    assert '<header class="topbar"' in html and 'class="person-menu"' in html, url
    assert re.fullmatch(r"\S.* · Passport", title(html)) and not title(html).startswith("Passport"), title(html)


@pytest.mark.parametrize("url", ["/accounts/password/reset/", "/accounts/login/"])
def test_allauth_pages_before_sign_in_use_the_layout(db: None, url: str) -> None:
    html = Client().get(url).content.decode()
    assert '<header class="topbar"' in html
    assert re.fullmatch(r"\S.* · Passport", title(html)) and not title(html).startswith("Passport"), title(html)


def test_people_from_an_identity_provider_get_no_password_or_totp_links(world: World) -> None:
    world.requester.set_unusable_password()
    world.requester.save()
    menu = person_menu(signed_in(world.requester).get("/requests/").content.decode())
    assert "Two-factor authentication" not in menu and "Change password" not in menu
    assert "Sign out" in menu


def test_error_pages_have_a_title_and_the_layout(world: World) -> None:
    response = signed_in(world.requester).get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert title(html) == "Page not found · Passport"
    assert 'class="person-menu"' in html


def test_the_favicon_is_linked_and_served(world: World) -> None:
    client = signed_in(world.requester)
    html = client.get("/requests/").content.decode()
    icon = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', html)
    assert icon and icon.group(1).endswith("favicon.svg")
    ico = client.get("/favicon.ico")
    assert ico.status_code == 302 and ico["Location"] == icon.group(1)
    svg = client.get(ico["Location"])
    assert svg.status_code == 200 and svg["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in svg.getvalue()


def test_only_people_who_may_ask_see_new_request(world: World) -> None:
    create = reverse("requests:create")
    for person, sees in [
        (world.requester, True),
        (world.approver, True),
        (world.auditor, False),
        (world.observer, False),
    ]:
        html = signed_in(person).get(reverse("requests:list")).content.decode()
        assert (f'href="{create}"' in html) is sees, person.username
        assert ("New request" in html) is sees, person.username


def test_the_totp_and_recovery_code_pages_use_the_layout(world: World) -> None:
    client = Client()
    password_sign_in(client, "alice")
    asked = client.get("/accounts/2fa/totp/activate/")
    reauthenticate = client.get(asked["Location"]).content.decode()
    assert 'class="person-menu"' in reauthenticate
    client.post(asked["Location"], {"password": "pw-alice"})
    activate = client.get("/accounts/2fa/totp/activate/")
    html = activate.content.decode()
    assert 'class="person-menu"' in html and title(html) == "Activate Authenticator App · Passport"
    code = totp(activate.context["form"].secret)
    assert client.post("/accounts/2fa/totp/activate/", {"code": code}).status_code == 302
    for url in ["/accounts/2fa/", "/accounts/2fa/recovery-codes/", "/accounts/2fa/totp/deactivate/"]:
        page = client.get(url)
        assert page.status_code == 200, url
        html = page.content.decode()
        assert 'class="person-menu"' in html, url
        assert re.fullmatch(r"\S.* · Passport", title(html)), title(html)


def test_a_form_without_its_csrf_token_gets_a_passport_page(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.requester)
    response = client.post(reverse("account_logout"))
    assert response.status_code == 403
    html = response.content.decode()
    assert title(html) == "Form expired · Passport" and '<header class="topbar"' in html
