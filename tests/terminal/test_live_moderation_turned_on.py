"""An account's "Moderated sessions" turned on while one of its browser terminals is open and
unwatched: the session pauses until an approver watches, and each session puts that on record.
Real worker, devcloud host, data channel, ASGI application and Redis channel layer, as in
tests/terminal/test_live_session.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal import services
from terminal.live_recording import MODERATED_NOW_HELD
from terminal.models import TerminalSession
from terminal.session_checks import PAUSED_MESSAGE
from tests.stack import Cloud
from tests.terminal.helpers import Screen, active_request, communicator, person_and_approver, session_cookie
from tests.terminal.test_live_feed import fresh_channel_layer, watcher  # noqa: F401  (a fixture)
from tests.terminal.test_live_session import _notices, _open_record, _statuses

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def _turn_moderation_on(account_pk: int) -> None:
    # What the admin's form does: a plain save of the account.
    account = AwsAccount.objects.get(pk=account_pk)
    account.require_session_join = True
    account.save()


def _applied(request_id: int) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(request_id=request_id, action="session.moderation_applied"))


def test_turning_moderation_on_pauses_an_open_terminal_until_an_approver_watches(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, carol = person_and_approver(prod)
    access_request = active_request(prod, alice, carol)
    grant = Grant.objects.get(request=access_request)
    ticket = services.ticket_issue(user=alice, grant=grant)
    alice_cookie, carol_cookie = session_cookie(alice), session_cookie(carol)

    async def scenario() -> tuple[Screen, TerminalSession]:
        terminal = communicator(grant.pk, ticket, cookie=alice_cookie)
        assert (await terminal.connect(timeout=10))[0]
        person = Screen(terminal)
        await person.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        record = await _open_record(grant)
        await terminal.send_to(bytes_data=b"echo before-$((1+1))\r")
        await person.until(lambda s: b"before-2" in s.output, timeout=20, what="an unmoderated shell")
        await asyncio.get_running_loop().run_in_executor(None, _turn_moderation_on, prod.pk)
        # Told at once (the save's signal), well before the session's own re-read of the setting.
        await person.until(lambda s: PAUSED_MESSAGE in _statuses(s), timeout=4, what="the pause")
        await terminal.send_to(bytes_data=b"echo unwatched-$((6*7))\r")  # dropped: nobody moderates
        await asyncio.sleep(1.5)
        watch = watcher(record.pk, carol_cookie)
        assert (await watch.connect(timeout=10))[0]
        await person.until(lambda s: _statuses(s)[-1] == "Connected.", timeout=10, what="the session resuming")
        await terminal.send_to(bytes_data=b"echo watched-$((5+5))\r")
        await person.until(lambda s: b"watched-10" in s.output, timeout=20, what="input once an approver watches")
        await terminal.disconnect()
        await watch.disconnect()
        return person, record

    person, record = async_to_sync(scenario)()
    assert b"unwatched-42" not in person.output
    assert MODERATED_NOW_HELD in _notices(person)
    [entry] = _applied(access_request.pk)
    assert entry.actor_id is None
    assert entry.detail == {
        "terminal_session": record.pk,
        "of": alice.username,
        "client": "browser",
        "kind": record.kind,
        "held": True,
    }


def test_moderation_turned_on_without_a_signal_is_found_by_the_session_itself(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    """A queryset's update() sends nothing (nor does a lost channel-layer message reach the session):
    the open session reads the setting again every few seconds and pauses all the same."""
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, carol = person_and_approver(prod)
    access_request = active_request(prod, alice, carol)
    grant = Grant.objects.get(request=access_request)
    ticket = services.ticket_issue(user=alice, grant=grant)
    alice_cookie = session_cookie(alice)

    async def scenario() -> Screen:
        terminal = communicator(grant.pk, ticket, cookie=alice_cookie)
        assert (await terminal.connect(timeout=10))[0]
        person = Screen(terminal)
        await person.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        await _open_record(grant)

        def update() -> None:
            AwsAccount.objects.filter(pk=prod.pk).update(require_session_join=True)

        await asyncio.get_running_loop().run_in_executor(None, update)
        await person.until(lambda s: PAUSED_MESSAGE in _statuses(s), timeout=15, what="the pause")
        await terminal.send_to(bytes_data=b"echo unwatched-$((6*7))\r")
        await asyncio.sleep(2)
        await terminal.disconnect()
        return person

    person = async_to_sync(scenario)()
    assert b"unwatched-42" not in person.output
    assert [entry.detail["held"] for entry in _applied(access_request.pk)] == [True]
