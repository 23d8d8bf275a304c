"""The recording page trusts the Logbook's ``terminal.ended`` entry, not the session row an insider
with write access to the database could edit: an ended terminal is checked whatever its row says,
and a row that contradicts the Logbook (or an ended row the Logbook never sealed) is an alarm."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import LogbookEntry
from terminal import services
from terminal.models import RecordingState, TerminalSession
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant
from tests.terminal.test_recordings import media, record  # noqa: F401  (media: the autouse fixture)

pytestmark = pytest.mark.django_db

TAMPERING = "treat this as tampering until someone explains it"


@pytest.fixture
def sealed(world: World) -> TerminalSession:
    grant = make_active_grant(world)
    return record(world.requester, grant, [("o", "$ "), ("i", "id\r"), ("o", "id\r\nuid=1001(rs-x)\r\n")])


def _page(client: Client, world: World, session: TerminalSession) -> str:
    client.force_login(world.auditor)
    return client.get(reverse("terminal:recording", args=[session.pk])).content.decode()


def _viewed(world: World) -> LogbookEntry:
    return LogbookEntry.objects.get(action="recording.viewed", actor=world.auditor, detail__what="page")


def test_a_session_row_reopened_is_still_checked_and_named_as_contradicting_the_logbook(
    world: World, sealed: TerminalSession, client: Client
) -> None:
    TerminalSession.objects.filter(pk=sealed.pk).update(ended_at=None)
    page = _page(client, world, sealed)
    assert 'data-testid="recording-open"' not in page
    assert 'data-testid="recording-warning"' in page and 'role="alert"' in page
    assert "says the terminal is still open" in page and TAMPERING in page
    # The digest was checked all the same (it matches: the bytes were not touched), and it can be played.
    assert "The recording matches the SHA-256 the Logbook sealed" in page and sealed.recording_sha256 in page
    assert 'id="recording-player"' in page
    assert _viewed(world).detail["sha256_ok"] is False
    assert client.get(reverse("terminal:recording-cast", args=[sealed.pk])).status_code == 200


def test_a_session_row_moved_to_another_request_is_checked_against_its_own_sealing_entry(
    world: World, sealed: TerminalSession, client: Client
) -> None:
    other = make_active_grant(world, world.db)
    TerminalSession.objects.filter(pk=sealed.pk).update(grant=other)
    page = _page(client, world, sealed)
    assert "may still be open" not in page and sealed.recording_sha256 in page
    assert 'data-testid="recording-warning"' in page and TAMPERING in page
    assert f"names request #{other.request_id} (the Logbook: request #{sealed.grant.request_id})" in page
    assert f"names instance {world.db.instance_id} (the Logbook: {world.web.instance_id})" in page
    assert _viewed(world).detail["sha256_ok"] is False


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"recording_sha256": "0" * 64}, "names another SHA-256 than the Logbook sealed"),
        ({"recording_state": RecordingState.FAILED}, "says the recording is failed (the Logbook: complete)"),
        ({"bytes_out": 1}, "bytes shown"),
    ],
)
def test_other_sealed_facts_edited_in_the_row_are_named(
    world: World, sealed: TerminalSession, client: Client, change: dict[str, Any], said: str
) -> None:
    TerminalSession.objects.filter(pk=sealed.pk).update(**change)
    page = _page(client, world, sealed)
    assert 'data-testid="recording-warning"' in page and said in page and TAMPERING in page
    assert _viewed(world).detail["sha256_ok"] is False


def test_an_ended_row_the_logbook_never_sealed_is_tampering_not_maybe_open(world: World, client: Client) -> None:
    grant = make_active_grant(world)
    relative = services.recording_relative_path(grant=grant)
    session = services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id="s-3", recording_path=relative
    )
    TerminalSession.objects.filter(pk=session.pk).update(ended_at=timezone.now(), recording_sha256="1" * 64)
    page = _page(client, world, session)
    assert "may still be open" not in page
    assert 'role="alert"' in page and "the Logbook has no terminal.ended entry for it" in page and TAMPERING in page
    assert _viewed(world).detail["sha256_ok"] is False


def test_an_untouched_recording_still_verifies(world: World, sealed: TerminalSession, client: Client) -> None:
    page = _page(client, world, sealed)
    assert 'data-testid="recording-verified"' in page and 'role="alert"' not in page
    assert _viewed(world).detail["sha256_ok"] is True
