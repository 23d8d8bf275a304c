"""Watching, ending and moderating a real browser-terminal session: the worker provisions the user
on a devcloud host, the terminal WebSocket logs in over the data channel, and an approver watches
through the watcher WebSocket; both through the real ASGI application and Redis channel layer."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal import live_services, services
from terminal.models import TerminalSession
from terminal.session_checks import PAUSED_MESSAGE, WAITING_MESSAGE
from tests.stack import Cloud
from tests.terminal.helpers import Screen, active_request, communicator, person_and_approver, session_cookie
from tests.terminal.storage_helpers import recording_bytes
from tests.terminal.test_live_feed import fresh_channel_layer, watcher  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def _record(grant: Grant) -> TerminalSession | None:
    return TerminalSession.objects.filter(grant=grant, ended_at__isnull=True).first()


async def _open_record(grant: Grant) -> TerminalSession:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = await database_sync_to_async(_record)(grant)
        if record is not None:
            return record
        await asyncio.sleep(0.2)
    raise AssertionError("no open TerminalSession row")


def _notices(screen: Screen) -> list[str]:
    return [m["message"] for m in screen.messages if m.get("type") == "notice"]


def _statuses(screen: Screen) -> list[str]:
    return [m["message"] for m in screen.messages if m.get("type") == "status"]


def test_an_approver_watches_live_and_ends_the_session_with_a_reason(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, carol = person_and_approver(prod)
    access_request = active_request(prod, alice, carol)
    grant = Grant.objects.get(request=access_request)
    ticket = services.ticket_issue(user=alice, grant=grant)
    alice_cookie, carol_cookie = session_cookie(alice), session_cookie(carol)

    async def scenario() -> tuple[Screen, Screen, TerminalSession]:
        terminal = communicator(grant.pk, ticket, cookie=alice_cookie)
        assert (await terminal.connect(timeout=10))[0]
        person = Screen(terminal)
        await person.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        record = await _open_record(grant)
        watch = watcher(record.pk, carol_cookie)
        assert (await watch.connect(timeout=10))[0]
        onlooker = Screen(watch)
        await onlooker.until(lambda s: s.message("reset"), timeout=10, what="the screen so far")
        await person.until(
            lambda s: "Carol Approver is watching this session." in _notices(s), timeout=10, what="the watch notice"
        )
        await terminal.send_to(bytes_data=b"echo live-$((6*7))\r")
        await person.until(lambda s: b"live-42" in s.output, timeout=20, what="the shell's answer")
        # That the watcher sees it; how soon is a benchmark's question, not a test's.
        await onlooker.until(lambda s: b"live-42" in s.output, timeout=20, what="the watcher seeing it")
        # Hostile output reaches the watcher as the same bytes (xterm.js parses them, not the page).
        await terminal.send_to(bytes_data=b"printf '\\033]0;t\\007<img src=x onerror=alert(1)>\\n'\r")
        await person.until(lambda s: b"\x1b]0;t\x07<img" in s.output, timeout=20, what="hostile output")
        await onlooker.until(lambda s: b"\x1b]0;t\x07<img" in s.output, timeout=5, what="hostile output watched")
        # Keystrokes from the watcher reach nothing.
        await watch.send_to(bytes_data=b"touch /tmp/watcher-was-here\r")
        await watch.send_to(text_data=json.dumps({"v": 1, "type": "input", "data": "echo from-watcher\r"}))
        await database_sync_to_async(live_services.session_terminate)(
            session=record, user=carol, reason="Not in\x1b[2J the change plan"
        )
        await person.until(lambda s: s.closed_code is not None, timeout=5, what="the terminal closed")
        await onlooker.until(lambda s: s.closed_code is not None, timeout=10, what="the watch closed")
        await terminal.disconnect(code=4000, timeout=15)
        await watch.disconnect()
        return person, onlooker, record

    person, onlooker, record = async_to_sync(scenario)()
    reason = "Carol Approver ended this session: Not in [2J the change plan"
    assert person.message("closed") == {"v": 1, "type": "closed", "reason": reason}
    assert onlooker.message("closed") == {"v": 1, "type": "closed", "reason": reason}
    assert b"from-watcher" not in person.output and b"watcher-was-here" not in person.output
    record.refresh_from_db()
    assert record.ended_at is not None and record.end_reason == reason
    assert "from-watcher" not in record.transcript_input
    terminated = LogbookEntry.objects.get(action="session.terminated")
    assert terminated.actor_id == carol.pk and terminated.detail["reason"] == "Not in [2J the change plan"
    assert LogbookEntry.objects.filter(action="session.watch_started", actor=carol).count() == 1
    assert LogbookEntry.objects.filter(action="session.watch_ended", actor=carol).count() == 1


def test_a_moderated_session_waits_for_an_approver_and_pauses_without_one(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    AwsAccount.objects.filter(pk=prod.pk).update(require_session_join=True)
    alice, carol = person_and_approver(prod)
    access_request = active_request(prod, alice, carol)
    grant = Grant.objects.get(request=access_request)
    ticket = services.ticket_issue(user=alice, grant=grant)
    alice_cookie, carol_cookie = session_cookie(alice), session_cookie(carol)

    async def scenario() -> tuple[Screen, TerminalSession]:
        terminal = communicator(grant.pk, ticket, cookie=alice_cookie)
        assert (await terminal.connect(timeout=10))[0]
        person = Screen(terminal)
        await person.until(lambda s: WAITING_MESSAGE in _statuses(s), timeout=60, what="waiting for an approver")
        record = await _open_record(grant)
        await terminal.send_to(bytes_data=b"echo held-$((2+2))\r")  # dropped: nobody moderates yet
        first = watcher(record.pk, carol_cookie)
        assert (await first.connect(timeout=10))[0]
        await person.until(lambda s: _statuses(s)[-1] == "Connected.", timeout=10, what="the session starting")
        await terminal.send_to(bytes_data=b"echo go-$((1+1))\r")
        await person.until(lambda s: b"go-2" in s.output, timeout=20, what="input once an approver watches")
        await first.disconnect()
        await person.until(lambda s: _statuses(s)[-1] == PAUSED_MESSAGE, timeout=10, what="the pause")
        await terminal.send_to(bytes_data=b"echo paused-$((3+3))\r")
        await asyncio.sleep(1.5)
        again = watcher(record.pk, carol_cookie)
        assert (await again.connect(timeout=10))[0]
        await person.until(lambda s: _statuses(s)[-1] == "Connected.", timeout=10, what="the session resuming")
        await terminal.send_to(bytes_data=b"echo back-$((4+4))\r")
        await person.until(lambda s: b"back-8" in s.output, timeout=20, what="input after resuming")
        await terminal.disconnect()
        await again.disconnect()
        return person, record

    person, record = async_to_sync(scenario)()
    assert b"held-4" not in person.output and b"paused-6" not in person.output
    notices = _notices(person)
    assert "Carol Approver is watching this session." in notices
    assert "Carol Approver stopped watching this session." in notices
    assert PAUSED_MESSAGE in notices
    deadline = time.monotonic() + 20
    while TerminalSession.objects.get(pk=record.pk).ended_at is None and time.monotonic() < deadline:
        time.sleep(0.25)
    record.refresh_from_db()
    assert "held" not in record.transcript_input and "paused" not in record.transcript_input
    assert "go-$((1+1))" in record.transcript_input and "back-$((4+4))" in record.transcript_input


def test_output_held_for_a_moderator_when_the_terminal_closes_is_recorded(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    """No approver ever watches: the shell's first read (its prompt) waits for one, never shown. The
    person closes the page meanwhile; that read is still the shell's output, so the recording has it."""
    settings.MEDIA_ROOT = tmp_path / "media"
    AwsAccount.objects.filter(pk=prod.pk).update(require_session_join=True)
    alice, carol = person_and_approver(prod)
    access_request = active_request(prod, alice, carol)
    grant = Grant.objects.get(request=access_request)
    ticket = services.ticket_issue(user=alice, grant=grant)
    alice_cookie = session_cookie(alice)

    async def scenario() -> tuple[Screen, TerminalSession]:
        terminal = communicator(grant.pk, ticket, cookie=alice_cookie)
        assert (await terminal.connect(timeout=10))[0]
        person = Screen(terminal)
        await person.until(lambda s: WAITING_MESSAGE in _statuses(s), timeout=60, what="waiting for an approver")
        record = await _open_record(grant)
        # Nothing tells when the prompt has been read (it is held, not shown): time for it to come.
        await asyncio.sleep(3)
        await terminal.disconnect()
        return person, record

    person, record = async_to_sync(scenario)()
    assert person.output == b""
    deadline = time.monotonic() + 20
    while TerminalSession.objects.get(pk=record.pk).ended_at is None and time.monotonic() < deadline:
        time.sleep(0.25)
    record.refresh_from_db()
    assert record.ended_at is not None
    events = [json.loads(line) for line in recording_bytes(record).decode().splitlines()[1:]]
    recorded = "".join(event[2] for event in events if event[1] == "o")
    assert grant.username in recorded, recorded
    assert record.bytes_out == len(recorded.encode())
