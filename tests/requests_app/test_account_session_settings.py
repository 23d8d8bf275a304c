"""An account's session policy: shown on the request page and the inventory, set by a site admin,
every change in the Logbook."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AwsAccount
from requests_app import services
from tests.audit.admin_forms import form_data, only_entry, post_ok, superuser_client
from tests.conftest import World

pytestmark = pytest.mark.django_db


def _text(html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}">(.*?)</(?:dd|span)>\s*(?:<|$)', html, re.DOTALL)
    assert match, testid
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def _pages(world: World, request_pk: int) -> tuple[str, str]:
    client = Client()
    client.force_login(world.approver)
    detail = client.get(reverse("requests:detail", args=[request_pk]))
    inventory = client.get(reverse("requests:inventory"))
    assert detail.status_code == inventory.status_code == 200
    return detail.content.decode(), inventory.content.decode()


def test_the_site_admin_sets_the_session_policy_and_the_pages_say_it(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="look"
    )
    detail, inventory = _pages(world, access_request.pk)
    assert _text(detail, "cli-sessions") == "recorded through the portal"
    assert _text(detail, "moderated-sessions") == "off"
    assert "CLI sessions: recorded through the portal" in " ".join(inventory.split())
    assert "Moderated sessions: off" in " ".join(inventory.split())

    client, root = superuser_client()
    url = f"/admin/accounts/awsaccount/{world.prod.pk}/change/"
    post_ok(client, url, form_data(client, url, cli_sessions="direct"))

    world.prod.refresh_from_db()
    assert (world.prod.cli_sessions, world.prod.require_session_join) == (AwsAccount.CliSessions.DIRECT, False)
    changed = only_entry("admin.changed", "accounts.awsaccount")
    assert changed.actor == root and changed.account_id == world.prod.account_id
    assert changed.detail["changes"] == {"cli_sessions": {"before": "record", "after": "direct"}}
    detail, inventory = _pages(world, access_request.pk)
    assert _text(detail, "cli-sessions") == "direct (not recorded)"
    assert _text(detail, "moderated-sessions") == "off"
    assert "CLI sessions: direct (not recorded)" in " ".join(inventory.split())

    # Moderated sessions need recorded ones (tests/requests_app/test_moderated_sessions.py): both in one save.
    post_ok(client, url, form_data(client, url, cli_sessions="record", require_session_join="on"))
    world.prod.refresh_from_db()
    assert (world.prod.cli_sessions, world.prod.require_session_join) == (AwsAccount.CliSessions.RECORD, True)
    detail, inventory = _pages(world, access_request.pk)
    assert _text(detail, "cli-sessions") == "recorded through the portal"
    assert _text(detail, "moderated-sessions") == (
        "on (nothing reaches the instances unless an approver watches: a shell, command or file transfer starts "
        "once one joins it; port forwards, Remote Desktop and AWS credentials are refused)"
    )
    assert "Moderated sessions: on" in " ".join(inventory.split())
    # A row saved moderated and direct before the admin refused that: the page says what is refused there.
    AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    detail, _ = _pages(world, access_request.pk)
    assert _text(detail, "moderated-sessions").endswith("AWS credentials and the direct CLI sessions are refused)")


def test_the_admin_lists_and_offers_both_settings(world: World) -> None:
    client, _ = superuser_client()
    listing = client.get("/admin/accounts/awsaccount/").content.decode()
    assert "CLI sessions" in listing and "Moderated sessions" in listing
    page = client.get(f"/admin/accounts/awsaccount/{world.prod.pk}/change/").content.decode()
    assert 'name="cli_sessions"' in page and 'name="require_session_join"' in page
    assert "Recorded through the portal" in page and "Direct (not recorded)" in page
