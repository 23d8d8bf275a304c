"""Every way a person reads what a recording holds is in the Logbook as ``recording.viewed``: the player's
page and the cast (tests/terminal/test_recordings.py), the Django admin's page of a session (its
transcripts, to a superuser: ``what="admin"``) and each search hit's snippet (60 characters either side
of the text searched for, so repeated searches would read a transcript out: ``what="search"``, with the
query, escaped and cut as any outside text)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import LogbookEntry
from terminal import services as terminal_services
from terminal.models import TerminalSession
from tests.audit.admin_forms import superuser_client
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db

SECRET = "db password is hunter2-prod"
SESSIONS = "/admin/terminal/terminalsession/"


def ended_session(world: World, transcript: str = f"$ cat creds\n{SECRET}\n") -> TerminalSession:
    grant = make_active_grant(world)
    session = terminal_services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id="s-1", recording_path="rec/1.cast"
    )
    TerminalSession.objects.filter(pk=session.pk).update(
        ended_at=session.started_at, transcript=transcript, transcript_input="cat creds\n"
    )
    return session


def reads(session: TerminalSession) -> list[LogbookEntry]:
    return list(
        LogbookEntry.objects.filter(action="recording.viewed", detail__terminal_session=session.pk).order_by("id")
    )


def test_the_admin_page_of_a_session_is_a_logged_read(world: World) -> None:
    session = ended_session(world)
    client, root = superuser_client()
    assert SECRET not in client.get(SESSIONS).content.decode()
    assert reads(session) == []  # the list shows no transcript
    page = client.get(f"{SESSIONS}{session.pk}/change/").content.decode()
    assert SECRET in page
    [read] = reads(session)
    assert read.actor_id == root.pk and read.request_id == session.grant.request_id
    assert read.detail["what"] == "admin" and read.detail["of"] == world.requester.username


def test_each_search_hit_is_a_logged_read_with_the_query(world: World, client: Client) -> None:
    found, other = ended_session(world), ended_session(world, transcript="nothing to see\n")
    client.force_login(world.auditor)
    page = client.get(reverse("terminal:recordings"), {"q": "password is"}).content.decode()
    assert "hunter2-prod" in page
    [read] = reads(found)
    assert read.actor_id == world.auditor.pk and read.request_id == found.grant.request_id
    assert read.detail["what"] == "search" and read.detail["query"] == "password is"
    assert reads(other) == []
    # A listing without text shows no snippet: nothing read.
    assert "hunter2-prod" not in client.get(reverse("terminal:recordings")).content.decode()
    assert len(reads(found)) == 1


def test_the_query_is_written_down_escaped_and_cut(world: World, client: Client) -> None:
    hidden = "\u202e\x1b" * 100  # 200 characters, each written as six when escaped
    session = ended_session(world, transcript=f"x {hidden} y\n")
    client.force_login(world.auditor)
    assert client.get(reverse("terminal:recordings"), {"q": hidden}).status_code == 200
    [read] = reads(session)
    query = read.detail["query"]
    assert "\u202e" not in query and "\x1b" not in query
    assert query.startswith("\\u202e\\x1b\\u202e") and query.endswith("...[truncated]")
    assert len(query) <= 200 + len("...[truncated]")


def test_a_search_logs_its_hits_in_as_many_queries_however_many_there_are(world: World, client: Client) -> None:
    ended_session(world)
    client.force_login(world.auditor)
    client.get(reverse("terminal:recordings"))  # the person's count of recording reads is open from here on
    with CaptureQueriesContext(connection) as one_hit:
        client.get(reverse("terminal:recordings"), {"q": "password is"})
    for _ in range(4):
        ended_session(world)
    with CaptureQueriesContext(connection) as five_hits:
        client.get(reverse("terminal:recordings"), {"q": "password is"})
    assert LogbookEntry.objects.filter(action="recording.viewed", detail__what="search").count() == 6
    assert len(five_hits) == len(one_hit)
