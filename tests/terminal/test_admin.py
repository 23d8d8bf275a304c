"""The Django admin's pages of recorded sessions show what a host or a client wrote (the command line,
why it ended, the transcripts, the instance's Name tag) with every hidden character as an escape, as
the portal's own recording pages do (tests/terminal/test_recordings.py); their list is never a way
to read what a session holds."""

from __future__ import annotations

import pytest

from audit.models import LogbookEntry
from requests_app.models import Instance
from terminal import services as terminal_services
from terminal.models import TerminalSession
from tests.audit.admin_forms import superuser_client
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db

RLO = "\u202e"
SESSIONS = "/admin/terminal/terminalsession/"


def test_a_sessions_host_text_is_shown_made_visible_in_the_list_and_on_its_page(world: World) -> None:
    grant = make_active_grant(world)
    Instance.objects.filter(pk=grant.instance_id).update(name=f"db-2 {RLO}ylno-daer")
    session = terminal_services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id="s-1", recording_path="rec/1.cast"
    )
    TerminalSession.objects.filter(pk=session.pk).update(
        client="cli",
        kind="exec",
        command=f"ls {RLO}gpj.exe\x1b]52;c;ZXZpbA==\x07",
        end_reason=f"closed: x{RLO}yz",
        transcript=f"deploy ok {RLO}; exit 0 # SEGAMI\n\tdone",
        transcript_input=f"curl x.sh|sh #{RLO}hs|hs.x lruc ton\n",
        recording_note=f"Not recorded: recording storage was unavailable ({RLO}tnemmoc)",
    )
    client, _ = superuser_client()

    listing = client.get(SESSIONS).content.decode()
    assert RLO not in listing
    assert f"{grant.instance.instance_id} (db-2 \\u202eylno-daer)" in listing
    assert "closed: x\\u202eyz" in listing

    page = client.get(f"{SESSIONS}{session.pk}/change/").content.decode()
    assert RLO not in page and "\x1b" not in page and "\x07" not in page
    for shown in (
        f"{grant.instance.instance_id} (db-2 \\u202eylno-daer)",
        "ls \\u202egpj.exe\\x1b]52;c;ZXZpbA==\\x07",
        "closed: x\\u202eyz",
        "deploy ok \\u202e; exit 0 # SEGAMI<br>\tdone",  # a transcript keeps its lines and tabs
        "curl x.sh|sh #\\u202ehs|hs.x lruc ton<br>",
        "recording storage was unavailable (\\u202etnemmoc)",
    ):
        assert shown in page, shown
    # Each field keeps its label and help text.
    for label in ("Command", "End reason", "Transcript", "Transcript input", "Recording note"):
        assert f"<label>{label}:</label>" in page, label
    assert "What the terminal printed, escape sequences removed." in page


def test_the_sessions_list_filters_by_start_date_only_and_never_by_what_a_session_holds(world: World) -> None:
    """?transcript_input__startswith=… would read a transcript out one character at a time from whether
    the row is listed, with no recording.viewed entry: the list takes its date hierarchy's lookups only."""
    session = terminal_services.terminal_session_start(
        user=world.requester, grant=make_active_grant(world), ssm_session_id="s-1", recording_path="rec/1.cast"
    )
    TerminalSession.objects.filter(pk=session.pk).update(
        command="psql", end_reason="closed", transcript="DB_PASSWORD=hunter2", transcript_input="export DB_PASSWORD=h\n"
    )
    client, _ = superuser_client()
    client.raise_request_exception = False
    for lookup in (
        "transcript_input__startswith",
        "transcript__regex",
        "transcript_index__contains",
        "command",
        "end_reason__startswith",
        "recording_path__startswith",
        "recording_sha256__startswith",
        "ssm_session_id",
        "user__password__startswith",
    ):
        assert client.get(SESSIONS, {lookup: "e"}).status_code == 400, lookup

    row = f'href="{SESSIONS}{session.pk}/change/'
    started = session.started_at
    drilled = client.get(SESSIONS, {"started_at__year": started.year, "started_at__month": started.month})
    assert drilled.status_code == 200 and row in drilled.content.decode()
    assert not LogbookEntry.objects.filter(action="recording.viewed").exists()


def test_another_sites_navigation_to_a_sessions_page_reads_nothing_until_the_admins_click(world: World) -> None:
    """The page is a read of the recording in the site admin's name (``recording.viewed``), as the
    player's page is: a tab another site navigates there gets the confirmation page instead."""
    grant = make_active_grant(world)
    session = terminal_services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id="s-1", recording_path="rec/1.cast"
    )
    TerminalSession.objects.filter(pk=session.pk).update(transcript="secret stuff\n")
    client, _ = superuser_client()
    page = f"{SESSIONS}{session.pk}/change/"
    viewed = LogbookEntry.objects.filter(action="recording.viewed", detail__terminal_session=session.pk)

    for site in ("cross-site", "same-site"):
        sent = client.get(page, HTTP_SEC_FETCH_SITE=site, HTTP_SEC_FETCH_MODE="navigate")
        assert sent.status_code == 200
        body = sent.content.decode()
        assert "secret stuff" not in body and "Another site sent you here" in body
        assert f'href="{page}"' in body
        assert not viewed.exists()

    # The admin's own click on Continue (same-origin) shows the page and is on record.
    confirmed = client.get(page, HTTP_SEC_FETCH_SITE="same-origin", HTTP_SEC_FETCH_MODE="navigate")
    assert "secret stuff" in confirmed.content.decode()
    assert viewed.count() == 1
