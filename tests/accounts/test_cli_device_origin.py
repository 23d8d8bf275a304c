"""The CLI sign-in's confirmation page says where and when the code was started (RFC 8628 section
5.4, remote phishing): someone who starts `passport auth login --name alice-laptop` on their own
machine and sends Alice the link is told apart by the address, which the client cannot choose."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from time_machine import TimeMachineFixture

from accounts.models import DeviceAuthorization
from audit.models import LogbookEntry
from tests.accounts.test_mfa import START
from tests.conftest import World

pytestmark = pytest.mark.django_db

WARNING = "Only confirm a code you started yourself, just now, from this address:"
DIFFERS = 'data-testid="device-origin-differs"'


def _start(address: str, name: str = "alice-laptop", **headers: str) -> str:
    response = Client().post(
        "/api/cli/device/", {"client_name": name}, content_type="application/json", REMOTE_ADDR=address, **headers
    )
    assert response.status_code == 200, response.content
    user_code: str = response.json()["user_code"]
    return user_code


def _browser(world: World, address: str, **headers: str) -> Client:
    client = Client(REMOTE_ADDR=address, **headers)
    client.force_login(world.requester)
    return client


def test_the_page_names_the_starting_address_and_time_and_marks_another_address(
    world: World, time_machine: TimeMachineFixture
) -> None:
    time_machine.move_to(START, tick=False)
    user_code = _start("203.0.113.66")

    time_machine.move_to(START + timedelta(minutes=3), tick=False)
    page = _browser(world, "198.51.100.7").get(f"/cli/device/?code={user_code}").content.decode()
    assert f'{WARNING} <strong class="mono">203.0.113.66</strong>' in page
    assert "2026-11-20 09:00:05" in page and "3\xa0minutes ago" in page
    assert "alice-laptop" in page
    assert DIFFERS in page and "198.51.100.7" in page


def test_the_same_address_is_not_marked(world: World) -> None:
    user_code = _start("203.0.113.66")
    page = _browser(world, "203.0.113.66").get(f"/cli/device/?code={user_code}").content.decode()
    assert WARNING in page and "203.0.113.66" in page
    assert DIFFERS not in page


def test_behind_a_trusted_proxy_the_address_it_saw_is_kept_and_a_forged_one_never(world: World, settings: Any) -> None:
    settings.PASSPORT_TRUSTED_PROXY_COUNT = 1
    settings.PASSPORT_TRUSTED_PROXIES = ["10.1.0.0/16"]
    proxied = _start("10.1.0.5", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.66")
    direct = _start("198.51.100.20", HTTP_X_FORWARDED_FOR="192.0.2.99")  # not our proxy: its header is dropped
    # A proxy passing on something that is not an address: kept as unknown, never shown as written.
    garbled = _start("10.1.0.5", HTTP_X_FORWARDED_FOR="<b>not-an-ip</b>")
    started = dict(DeviceAuthorization.objects.values_list("user_code", "started_from"))
    assert started == {proxied: "203.0.113.66", direct: "198.51.100.20", garbled: None}

    # The confirming browser is read the same way: the address the proxy saw, here the starter's.
    same = _browser(world, "10.1.0.5", HTTP_X_FORWARDED_FOR="203.0.113.66")
    page = same.get(f"/cli/device/?code={proxied}").content.decode()
    assert "203.0.113.66" in page and DIFFERS not in page
    page = same.get(f"/cli/device/?code={garbled}").content.decode()
    assert f'{WARNING} <strong class="mono">unknown</strong>' in page and "not-an-ip" not in page


def test_an_ipv6_client_is_the_same_within_its_64(world: World) -> None:
    user_code = _start("2001:db8:1:2::10")
    assert DeviceAuthorization.objects.get(user_code=user_code).started_from == "2001:db8:1:2::10"
    page = _browser(world, "2001:db8:1:2::99").get(f"/cli/device/?code={user_code}").content.decode()
    assert "2001:db8:1:2::10" in page and DIFFERS not in page
    page = _browser(world, "2001:db8:9:9::10").get(f"/cli/device/?code={user_code}").content.decode()
    assert DIFFERS in page


def test_the_cli_login_entry_names_where_the_code_was_started_and_confirmed(world: World) -> None:
    user_code = _start("203.0.113.66")
    confirmed = _browser(world, "198.51.100.7").post("/cli/device/", {"user_code": user_code})
    assert confirmed.status_code == 200
    entry = LogbookEntry.objects.get(action="cli.login")
    assert entry.actor == world.requester
    assert entry.detail == {
        "client": "alice-laptop",
        "started_from": "203.0.113.66",
        "confirmed_from": "198.51.100.7",
    }


def _forms(page: str) -> list[str]:
    """The forms of the page's own panel (the layout around it has others)."""
    panel = page[page.index('class="panel device-confirm"') :]
    return re.findall(r"<form\b[^>]*>.*?</form>", panel[: panel.index("</section>")], re.S)


def test_a_code_typed_by_hand_is_confirmed_only_on_a_page_naming_where_it_was_started(world: World) -> None:
    """A bare visit to /cli/device/ (the person types the code shown in their terminal) asks for the
    code first; the confirm button comes on the page that names the starting address, as the link does."""
    user_code = _start("203.0.113.66", name="<b>laptop</b>")
    browser = _browser(world, "198.51.100.7")
    bare = browser.get("/cli/device/").content.decode()
    assert "Confirm sign-in" not in bare
    (form,) = _forms(bare)
    assert re.search(r'method="get"', form) and 'name="code"' in form and "csrfmiddlewaretoken" not in form

    # What the form sends: the code as typed (lower case, no dash), as a query.
    typed = user_code.lower().replace("-", "")
    page = browser.get("/cli/device/", {"code": typed}).content.decode()
    assert f'{WARNING} <strong class="mono">203.0.113.66</strong>' in page
    assert DIFFERS in page and "198.51.100.7" in page
    assert "&lt;b&gt;laptop&lt;/b&gt;" in page and "<b>laptop" not in page
    (confirm,) = _forms(page)
    assert 'method="post"' in confirm and f'value="{user_code}"' in confirm and "Confirm sign-in" in confirm
    assert not DeviceAuthorization.objects.get(user_code=user_code).confirmed_at

    assert browser.post("/cli/device/", {"user_code": user_code}).status_code == 200
    assert DeviceAuthorization.objects.get(user_code=user_code).confirmed_at


def test_a_typed_code_that_is_unknown_asks_for_the_code_again_and_offers_no_confirmation(world: World) -> None:
    page = _browser(world, "198.51.100.7").get("/cli/device/", {"code": "ZZZZ-ZZZZ"}).content.decode()
    assert "unknown or has expired" in page
    assert "Confirm sign-in" not in page and WARNING not in page
    (form,) = _forms(page)
    assert 'method="get"' in form and 'name="code"' in form


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site"])
def test_a_code_link_from_another_site_only_fills_the_code_in(world: World, fetch_site: str) -> None:
    """Another site's link asks for nothing to be looked up: the page shows the code in the form the
    person sends themselves (from the portal's own page), and names no starting address until then."""
    user_code = _start("203.0.113.66")
    browser = _browser(world, "198.51.100.7")
    entries = LogbookEntry.objects.count()

    page = browser.get(f"/cli/device/?code={user_code}", HTTP_SEC_FETCH_SITE=fetch_site).content.decode()

    assert "Another site sent you here with this code" in page
    assert "Confirm sign-in" not in page and WARNING not in page and "203.0.113.66" not in page
    (form,) = _forms(page)
    assert 'method="get"' in form and 'name="code"' in form and f'value="{user_code}"' in form
    assert "csrfmiddlewaretoken" not in form
    assert LogbookEntry.objects.count() == entries
    assert not DeviceAuthorization.objects.get(user_code=user_code).confirmed_at

    # The person's own Continue, from the portal's page: the code is looked up and its origin named.
    looked_up = browser.get("/cli/device/", {"code": user_code}, HTTP_SEC_FETCH_SITE="same-origin").content.decode()
    assert f'{WARNING} <strong class="mono">203.0.113.66</strong>' in looked_up
    assert "Another site sent you here" not in looked_up
    assert browser.post("/cli/device/", {"user_code": user_code}).status_code == 200
    assert DeviceAuthorization.objects.get(user_code=user_code).confirmed_at
