"""A loop of GETs on recordings (the player's page, the cast download, a text search) is held to
PASSPORT_RECORDING_READS_PER_MINUTE per person, one count for the three: each reads a whole
recording back and appends recording.viewed under the Logbook's head lock. Past it, 429 with
Retry-After, and no recording.viewed entry (terminal.read_limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import LogbookEntry
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant
from tests.terminal.test_recordings import record

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return Path(settings.MEDIA_ROOT)


def test_a_loop_of_recording_reads_is_refused_past_the_limit_and_writes_no_entry(
    world: World, client: Client, settings: Any
) -> None:
    settings.PASSPORT_RECORDING_READS_PER_MINUTE = 4
    session = record(world.requester, make_active_grant(world), [("o", "$ "), ("i", "ls\r"), ("o", "ls\r\nx\r\n")])
    client.force_login(world.requester)  # a plain requester, their own recording
    urls = [
        reverse("terminal:recording", args=[session.pk]),
        reverse("terminal:recording-cast", args=[session.pk]),
        reverse("terminal:recordings") + "?q=ls",
    ]
    responses = [client.get(url) for url in urls * 4]
    codes = [response.status_code for response in responses]
    assert codes[:4] == [200] * 4 and set(codes[4:]) == {429}, codes
    refused = responses[-1]
    assert refused["Retry-After"].isdigit() and 0 < int(refused["Retry-After"]) <= 61
    assert "Too many recording reads" in refused.content.decode()
    assert "more than 4 in one minute" in refused.content.decode()
    # Only the reads let through are on record; the refusals once, as api.throttled.
    viewed = LogbookEntry.objects.filter(actor=world.requester, action="recording.viewed")
    assert viewed.count() == 4
    throttled = LogbookEntry.objects.filter(actor=world.requester, action="api.throttled")
    assert [entry.detail["limit"] for entry in throttled] == [4]


def test_an_htmx_search_past_the_limit_gets_the_one_line_refusal(world: World, client: Client, settings: Any) -> None:
    settings.PASSPORT_RECORDING_READS_PER_MINUTE = 1
    client.force_login(world.requester)
    assert client.get(reverse("terminal:recordings")).status_code == 200
    refused = client.get(reverse("terminal:recordings") + "?q=ls", headers={"HX-Request": "true"})
    assert refused.status_code == 429 and refused["X-Passport-Message"] == "1"
    assert refused.content.decode().startswith("Too many recording reads")
