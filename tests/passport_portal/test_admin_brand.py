"""The admin says Passport (its header, titles, mark and colours from a static stylesheet, no inline
style), and shows terminal sessions, their transcripts and a link to the portal's player to
superusers only, read-only: adding, changing and deleting are refused with 403."""

from __future__ import annotations

import html

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from requests_app.models import Instance
from terminal import services as terminal_services
from terminal.models import TerminalSession
from tests.audit.admin_forms import admin_entries, superuser_client
from tests.conftest import World
from tests.factories import make_user
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db

SESSIONS = "/admin/terminal/terminalsession/"
HOSTILE = '"><img src=x onerror=alert(1)>$(reboot)'


@pytest.fixture
def recording(world: World) -> TerminalSession:
    Instance.objects.filter(pk=world.web.pk).update(name=HOSTILE)
    session = terminal_services.terminal_session_start(
        user=world.requester, grant=make_active_grant(world), ssm_session_id="s-1", recording_path="rec/1.cast"
    )
    TerminalSession.objects.filter(pk=session.pk).update(
        transcript="$ whoami\nrs-4f2a9c\n<script>alert(1)</script>", transcript_input="whoami\n"
    )
    return session


def test_every_admin_page_says_passport_with_its_mark_and_stylesheet(world: World) -> None:
    client, _ = superuser_client()

    index = client.get("/admin/").content.decode()
    # Django's admin sign-in form is not served: /admin/login/ sends people to the portal's.
    people = client.get("/admin/accounts/user/").content.decode()

    assert "<title>Passport: people, accounts and recordings | Passport admin</title>" in index
    assert "<h1>Passport: people, accounts and recordings</h1>" in index
    for page in (index, people):
        assert 'data-testid="admin-brand"><span class="passport-admin-mark" aria-hidden="true">P</span>' in page
        assert "Passport administration</a>" in page and "Django administration" not in page
        assert '<link rel="stylesheet" href="/static/css/admin.css">' in page
        assert 'class="passport-admin ' in page
        assert " style=" not in page and "<style" not in page


def test_a_superuser_lists_sessions_with_a_link_to_the_player(recording: TerminalSession) -> None:
    client, _ = superuser_client()

    page = client.get(SESSIONS)

    content = page.content.decode()
    assert page.status_code == 200
    assert f'<a class="passport-admin-play" href="/terminal/recordings/{recording.pk}/">Play in Passport</a>' in content
    assert html.escape(HOSTILE) in content and HOSTILE not in content
    assert f"{SESSIONS}add/" not in content


def test_a_superuser_reads_a_transcript_and_cannot_change_it(recording: TerminalSession) -> None:
    client, _ = superuser_client()
    url = f"{SESSIONS}{recording.pk}/change/"

    page = client.get(url)

    content = page.content.decode()
    assert page.status_code == 200
    assert "rs-4f2a9c" in content and "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<script>alert(1)" not in content
    assert f'href="/terminal/recordings/{recording.pk}/">Play in Passport</a>' in content
    assert 'name="_save"' not in content
    changed = client.post(url, {"transcript": "nothing happened", "end_reason": "edited"})
    assert changed.status_code == 403
    recording.refresh_from_db()
    assert recording.transcript.startswith("$ whoami") and recording.end_reason == ""
    assert admin_entries() == []


def test_adding_and_deleting_a_session_are_refused(recording: TerminalSession) -> None:
    client, _ = superuser_client()

    assert client.get(f"{SESSIONS}add/").status_code == 403
    assert client.post(f"{SESSIONS}add/", {"end_reason": "forged"}).status_code == 403
    assert client.get(f"{SESSIONS}{recording.pk}/delete/").status_code == 403
    assert client.post(f"{SESSIONS}{recording.pk}/delete/", {"post": "yes"}).status_code == 403
    assert TerminalSession.objects.count() == 1 and admin_entries() == []


def test_staff_with_the_view_permission_still_cannot_read_transcripts(recording: TerminalSession) -> None:
    staff = make_user("stella", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_terminalsession"))
    client = Client()
    client.force_login(staff)

    assert client.get(SESSIONS).status_code == 403
    assert client.get(f"{SESSIONS}{recording.pk}/change/").status_code == 403
    assert b"terminal" not in client.get("/admin/").content.lower().split(b"<h1>", 1)[1]
