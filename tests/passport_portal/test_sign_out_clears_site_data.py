"""Signing out clears what the portal's pages left in the browser (passport_portal.middleware):
its HTTP cache and its storage, htmx's history among it. No other answer clears anything."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import World

pytestmark = pytest.mark.django_db


def test_signing_out_clears_the_browsers_cache_and_storage(client: Client, world: World) -> None:
    client.force_login(world.auditor)
    page = client.get("/logbook/")
    assert page.status_code == 200 and "Clear-Site-Data" not in page
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Clear-Site-Data"] == '"cache", "storage"'
    # Nobody signed in any more: the next answers clear nothing.
    assert "Clear-Site-Data" not in client.post("/accounts/logout/")
    assert "Clear-Site-Data" not in client.get("/accounts/login/")


def test_pages_keep_no_htmx_history_in_the_browser(client: Client, world: World) -> None:
    client.force_login(world.auditor)
    body = client.get("/logbook/").content.decode()
    assert '"historyCacheSize": 0' in body
    assert 'hx-push-url="true"' in body  # the Logbook still pushes its URL; htmx keeps no copy
