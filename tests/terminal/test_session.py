"""A whole browser-terminal session against the real stack: the Celery worker provisions the user in a
devcloud host, the WebSocket logs in through StartSession + the data channel + a portal certificate,
and completing the request closes the terminal, ends the SSM session and seals the recording."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.utils import timezone

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services as request_services
from requests_app.models import Grant
from terminal import services
from terminal.bridge import SshBridge
from terminal.models import RecordingState, SessionSlot, TerminalSession
from terminal.sweeps import terminals_orphaned
from tests.factories import make_membership, make_user
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import Screen, active_request, communicator, open_shell, session_cookie, ticketed_grant
from tests.terminal.storage_helpers import recording_bytes

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def test_terminal_session_whoami_resize_and_close_on_completion(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, access_request, grant, cookie, ticket = ticketed_grant(prod)

    async def session() -> Screen:
        screen = await open_shell(grant.pk, ticket, cookie)
        comm = screen.comm
        await comm.send_to(text_data=json.dumps({"v": 1, "type": "resize", "cols": 101, "rows": 33}))
        # Markers only the host computes: the prompt and the typed line's echo cannot satisfy a wait.
        await comm.send_to(bytes_data=b"echo u=$(whoami)\r")
        await screen.until(lambda s: f"u={grant.username}".encode() in s.output, timeout=20, what="whoami's answer")
        await comm.send_to(bytes_data=b"stty size\r")
        await screen.until(lambda s: b"33 101" in s.output, timeout=20, what="the new terminal size")
        # UTF-8 both ways, as a paste would send it (JSON input frame).
        await comm.send_to(text_data=json.dumps({"v": 1, "type": "input", "data": "echo caf\u00e9-\u2603-$((6*7))\r"}))
        await screen.until(lambda s: "café-☃-42".encode() in s.output, timeout=20, what="UTF-8 echo")

        await database_sync_to_async(request_services.access_request_complete)(
            access_request=access_request, actor=alice
        )
        # Within 5 s: the reason, then the close.
        await screen.until(lambda s: s.closed_code is not None, timeout=5, what="the close after completion")
        # The browser answers the close; the consumer finishes its clean-up and stops.
        await comm.disconnect(code=4000, timeout=15)
        return screen

    screen = async_to_sync(session)()
    closed = screen.message("closed")
    assert closed is not None and "completed" in closed["reason"]

    # The recording is sealed, holds exactly the output sent, and the Logbook names its digest.
    terminal_session = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="the session record"
    )
    # Read back from the recordings storage, chunk by chunk against the manifest.
    recording = recording_bytes(terminal_session)
    assert terminal_session.recording_state == RecordingState.COMPLETE
    assert hashlib.sha256(recording).hexdigest() == terminal_session.recording_sha256
    lines = recording.decode().splitlines()
    assert json.loads(lines[0])["version"] == 2
    events = [json.loads(line) for line in lines[1:]]
    output = "".join(event[2] for event in events if event[1] == "o")
    assert f"u={grant.username}" in output and "café-☃-42" in output
    # Every byte sent, once; then perhaps the prompt after the echo, read once the terminal was closing.
    assert output.encode().startswith(screen.output), (output[-200:], screen.output[-200:])
    assert "café-☃-42".encode() not in output.encode()[len(screen.output) :]
    assert terminal_session.bytes_out == len(output.encode())
    assert ["r", "101x33"] in [event[1:] for event in events]
    assert any(event[1] == "i" and "whoami" in event[2] for event in events)
    ended = LogbookEntry.objects.filter(action="terminal.ended", request_id=access_request.pk).get()
    assert ended.detail["recording_sha256"] == terminal_session.recording_sha256
    assert LogbookEntry.objects.filter(action="terminal.started", request_id=access_request.pk).count() == 1

    # TerminateSession was called: devcloud no longer has the session active.
    ssm_session = aws.devcloud.runtime.sessions.get(terminal_session.ssm_session_id)
    assert ssm_session is not None
    wait_for(lambda: not ssm_session.active, timeout=10, what="the SSM session to end")


def test_idle_timeout_and_browser_drop_both_seal_the_recording(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSPORT_TERMINAL_IDLE_SECONDS = 3
    bob, approver = make_user("bob"), make_user("approver")
    make_membership(bob, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, bob, approver)
    grant = Grant.objects.select_related("instance", "request").get(request=access_request)
    cookie = session_cookie(bob)
    first_ticket, second_ticket = (services.ticket_issue(user=bob, grant=grant) for _ in range(2))

    async def idle() -> Screen:
        screen = await open_shell(grant.pk, first_ticket, cookie)
        comm = screen.comm
        await comm.send_to(bytes_data=b"echo still-here\r")
        await screen.until(lambda s: s.message("closed"), timeout=20, what="the idle close")
        await comm.disconnect(code=4000, timeout=15)
        return screen

    idle_screen = async_to_sync(idle)()
    idle_closed = idle_screen.message("closed")
    assert idle_closed is not None and "without input" in idle_closed["reason"]

    async def drop() -> Screen:
        screen = await open_shell(grant.pk, second_ticket, cookie)
        comm = screen.comm
        # Output keeps coming while the browser goes away without a word.
        await comm.send_to(bytes_data=b"for i in $(seq 1 200); do echo line-$i; sleep 0.01; done\r")
        await screen.until(lambda s: b"line-5" in s.output, timeout=20, what="some output")
        await comm.disconnect(code=1006, timeout=15)
        return screen

    async_to_sync(drop)()
    sessions = list(TerminalSession.objects.filter(grant=grant).order_by("id"))
    assert len(sessions) == 2 and all(session.ended_at for session in sessions)
    assert "without input" in sessions[0].end_reason
    assert sessions[1].end_reason == "The browser disconnected."
    for terminal_session in sessions:
        recording = recording_bytes(terminal_session)
        assert hashlib.sha256(recording).hexdigest() == terminal_session.recording_sha256
        events = [json.loads(line) for line in recording.decode().splitlines()[1:]]
        recorded = "".join(event[2] for event in events if event[1] == "o").encode()
        assert len(recorded) == terminal_session.bytes_out
    entries = LogbookEntry.objects.filter(action="terminal.ended", request_id=access_request.pk).order_by("id")
    assert [entry.detail["recording_sha256"] for entry in entries] == [s.recording_sha256 for s in sessions]


def test_a_terminal_closed_as_its_login_completes_is_ended_at_once_with_the_browsers_close(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The browser goes while the shell logs in (the SSH connection over the data channel, seconds
    long): the ending begins, and the login completes anyway. The terminal's row, written as it
    completes, is ended by this web process at once with the browser's close, not left open for the
    orphan sweep to end hours later as if the web process had died."""
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, access_request, grant, cookie, ticket = ticketed_grant(prod)
    logged_in, ending, terminated = asyncio.Event(), asyncio.Event(), threading.Event()
    bridge_open, bridge_close = SshBridge.open, SshBridge.close
    terminate, start_row = services.ssh_session_terminate, services.terminal_session_start

    async def open_until_the_ending_began(bridge: SshBridge, **size: int) -> None:
        await bridge_open(bridge, **size)
        logged_in.set()
        await ending.wait()

    async def close(bridge: SshBridge) -> None:
        ending.set()
        await bridge_close(bridge)

    def terminate_and_say_so(**kwargs: Any) -> None:
        terminate(**kwargs)
        terminated.set()

    def start_row_as_terminated(**kwargs: Any) -> TerminalSession:
        # The row's write takes as long as AWS takes to terminate (at most 3 s here), and a moment more.
        terminated.wait(3)
        time.sleep(0.2)
        return start_row(**kwargs)

    monkeypatch.setattr(SshBridge, "open", open_until_the_ending_began)
    monkeypatch.setattr(SshBridge, "close", close)
    monkeypatch.setattr(services, "ssh_session_terminate", terminate_and_say_so)
    monkeypatch.setattr(services, "terminal_session_start", start_row_as_terminated)

    async def close_while_logging_in() -> None:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        connected, _ = await comm.connect(timeout=10)
        assert connected
        await asyncio.wait_for(logged_in.wait(), 60)
        await comm.send_input({"type": "websocket.disconnect", "code": 1001})  # the person closed the tab
        await comm.wait(timeout=30)

    async_to_sync(close_while_logging_in)()

    record = TerminalSession.objects.get(grant=grant)
    assert record.ended_at is not None, "the terminal was left open, for the sweep"
    assert record.end_reason == "The browser disconnected."
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert ended.actor_id == alice.pk and ended.detail["reason"] == "The browser disconnected."
    assert "sealed_by" not in ended.detail
    # Its Session Manager session was terminated at once, and its place under the cap given back.
    ssm_session = aws.devcloud.runtime.sessions.get(record.ssm_session_id)
    assert ssm_session is not None and terminated.is_set()
    wait_for(lambda: not ssm_session.active, timeout=10, what="the SSM session to end")
    assert not SessionSlot.objects.exists()
    # Nothing is left for the sweep, however long it waits.
    later = timezone.now() + timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS + 60)
    assert terminals_orphaned(now=later) == []
