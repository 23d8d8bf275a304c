"""GET pages that act in the signed-in person's name do nothing when another site sent the browser
there (core.cross_site): the session cookie is SameSite=Lax, so a page of any site can navigate a
person's tab to them. The headers are what Chromium sends on such a navigation. A typed URL
(``none``), the portal's own links (``same-origin``) and clients that send no Sec-Fetch-Site act."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal.models import TerminalSession, TerminalTicket
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant
from tests.terminal.test_recordings import media, record  # noqa: F401  (media: the autouse fixture)

pytestmark = pytest.mark.django_db

NAVIGATION = {"HTTP_SEC_FETCH_MODE": "navigate", "HTTP_SEC_FETCH_DEST": "document"}
FOREIGN = ["cross-site", "same-site"]
OWN = ["same-origin", "none", None]


def _headers(site: str | None) -> dict[str, str]:
    return {**NAVIGATION, "HTTP_SEC_FETCH_SITE": site} if site else {}


@pytest.fixture
def auditor(client: Client, world: World) -> Client:
    client.force_login(world.auditor)
    return client


@pytest.fixture
def recording(world: World) -> TerminalSession:
    return record(world.requester, make_active_grant(world), [("o", "the Launch-Code is 42\r\n")])


def _body(response: Any) -> str:
    return (b"".join(response.streaming_content) if response.streaming else response.content).decode()


def _asks_to_continue(response: Any, url: str) -> None:
    body = _body(response)
    assert response.status_code == 200
    assert 'data-testid="cross-site"' in body
    assert f'href="{url}"' in body.replace("&amp;", "&")  # the person's own click does it
    assert "Content-Disposition" not in response


def _entries(action: str) -> int:
    return LogbookEntry.objects.filter(action=action).count()


@pytest.mark.parametrize("site", FOREIGN)
@pytest.mark.parametrize("name", ["audit:export-csv", "audit:export-jsonl"])
def test_another_site_cannot_export_the_logbook_in_an_auditors_name(auditor: Client, site: str, name: str) -> None:
    url = reverse(name) + "?q=planted-by-evil.example"
    response = auditor.get(url, **_headers(site))
    _asks_to_continue(response, url)
    assert _entries("logbook.exported") == 0


@pytest.mark.parametrize("site", OWN)
def test_the_auditors_own_export_is_recorded(auditor: Client, site: str | None) -> None:
    response = auditor.get(reverse("audit:export-csv"), **_headers(site))
    _body(response)
    assert response["Content-Disposition"].startswith("attachment;")
    assert _entries("logbook.exported") == 1


@pytest.mark.parametrize("site", FOREIGN)
def test_another_site_cannot_search_recordings_in_a_persons_name(
    auditor: Client, recording: TerminalSession, site: str
) -> None:
    before = _entries("recording.viewed")
    url = reverse("terminal:recordings") + "?q=Launch-Code"
    _asks_to_continue(auditor.get(url, **_headers(site)), url)
    assert _entries("recording.viewed") == before
    response = auditor.get(url, **_headers("same-origin"))
    assert "Launch" in _body(response)
    assert _entries("recording.viewed") == before + 1


@pytest.mark.parametrize("site", FOREIGN)
def test_another_site_cannot_open_a_recording_in_a_persons_name(
    auditor: Client, recording: TerminalSession, site: str
) -> None:
    before = _entries("recording.viewed")
    for name in ("terminal:recording", "terminal:recording-cast"):
        url = reverse(name, args=[recording.pk])
        _asks_to_continue(auditor.get(url, **_headers(site)), url)
    assert _entries("recording.viewed") == before
    for name in ("terminal:recording", "terminal:recording-cast"):
        _body(auditor.get(reverse(name, args=[recording.pk]), **_headers("same-origin")))
    assert _entries("recording.viewed") == before + 2


@pytest.mark.parametrize("site", FOREIGN)
def test_another_site_cannot_open_a_terminal_for_a_person(client: Client, world: World, site: str) -> None:
    grant = make_active_grant(world)
    client.force_login(world.requester)
    url = reverse("terminal:page", args=[grant.pk])
    response = client.get(url, **_headers(site))
    _asks_to_continue(response, url)
    assert "data-ticket" not in _body(response)
    assert not TerminalTicket.objects.filter(grant=grant).exists()
    response = client.get(url, **_headers("same-origin"))
    assert "data-ticket" in _body(response)
    assert TerminalTicket.objects.filter(grant=grant).count() == 1


@pytest.mark.parametrize("site", FOREIGN)
def test_another_site_cannot_make_an_approver_watch_or_join(client: Client, world: World, site: str) -> None:
    AwsAccount.objects.filter(pk=world.prod.pk).update(require_session_join=True)
    grant = make_active_grant(world)
    session = TerminalSession.objects.create(grant=grant, user=world.requester)
    client.force_login(world.approver)
    url = reverse("terminal:watch", args=[session.pk])
    response = client.get(url, **_headers(site))
    _asks_to_continue(response, url)
    assert "/ws/watch/" not in _body(response)
    assert "/ws/watch/" in _body(client.get(url, **_headers("same-origin")))
