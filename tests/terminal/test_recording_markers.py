"""The player's markers (one per line typed) are bounded on the recording's page: asciinema-player draws a
DOM node per marker and never finishes with tens of thousands (a pasted script, ``ssh web-1 bash < x``).
The page says how many commands are not shown as markers; the transcript keeps them all."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from terminal.models import TerminalSession
from terminal.transcript import MAX_MARKERS
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant
from tests.terminal.test_recordings import record

pytestmark = pytest.mark.django_db

LINES = 60_000


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return Path(settings.MEDIA_ROOT)


def page_of(client: Client, session: TerminalSession) -> tuple[str, list[Any]]:
    body = client.get(reverse("terminal:recording", args=[session.pk])).content.decode()
    found = re.search(r'<script id="player-options" type="application/json">(.*?)</script>', body, re.S)
    assert found, body
    return body, json.loads(found.group(1))["markers"]


def test_the_player_gets_a_bounded_number_of_markers_and_the_page_says_how_many_more(
    world: World, client: Client
) -> None:
    session = record(world.requester, make_active_grant(world), [("o", "$ "), ("i", "x\r" * LINES), ("o", "done\r\n")])
    client.force_login(world.auditor)
    body, markers = page_of(client, session)
    assert len(markers) == MAX_MARKERS, f"{len(markers)} markers, page {len(body)} bytes"
    assert len(body) < 200_000
    assert f"{LINES - MAX_MARKERS:,} more commands typed are not shown as markers" in body
    session.refresh_from_db()
    assert session.transcript_input == "x\n" * LINES  # the transcript (and its search) keeps every line


def test_a_recording_indexed_before_the_bound_is_bounded_on_the_page_too(world: World, client: Client) -> None:
    session = record(world.requester, make_active_grant(world), [("i", "ls\r"), ("o", "ok\r\n")])
    index = {**session.transcript_index, "commands": [[n / 100, f"echo {n}"] for n in range(LINES)]}
    index.pop("commands_not_shown", None)
    TerminalSession.objects.filter(pk=session.pk).update(transcript_index=index)
    client.force_login(world.auditor)
    body, markers = page_of(client, session)
    assert len(markers) == MAX_MARKERS and markers[-1] == [(MAX_MARKERS - 1) / 100, f"echo {MAX_MARKERS - 1}"]
    assert f"{LINES - MAX_MARKERS:,} more commands typed are not shown as markers" in body


def test_a_short_session_says_nothing_of_markers_left_out(world: World, client: Client) -> None:
    session = record(world.requester, make_active_grant(world), [("i", "ls\r"), ("o", "ok\r\n")])
    client.force_login(world.auditor)
    body, markers = page_of(client, session)
    assert [label for _, label in markers] == ["ls"]
    assert "not shown as markers" not in body
