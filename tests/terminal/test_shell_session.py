"""terminal.session.ShellSession driven directly, with no Channels and no WebSocket: a real devcloud
host, the real worker, the real services; the browser is a list of what it was sent.

And the envelope refused over the real WebSocket, with the close code the browser sees.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal import frames, services
from terminal.models import TerminalSession
from tests.factories import make_membership, make_user
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import (
    ListBrowser,
    Screen,
    active_request,
    communicator,
    ready_grant,
    session_cookie,
    shell_logged_in,
    shell_session,
)
from tests.terminal.storage_helpers import recording_bytes

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def test_a_session_without_channels_logs_in_records_and_refuses_an_unknown_frame(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, _approver, access_request, grant = ready_grant(prod)
    browser = ListBrowser()
    session = shell_session(alice, grant, browser)

    async def drive() -> None:
        await shell_logged_in(session, browser)
        assert session.channel_groups == [
            services.request_group(access_request.pk),
            services.user_group(alice.pk),
        ]
        await session.receive_text(json.dumps({"v": 1, "type": "resize", "cols": 97, "rows": 31}))
        await session.receive_text(json.dumps({"v": 1, "type": "input", "data": "echo u=$(whoami); stty size\r"}))
        await browser.until(lambda b: b"31 97" in b.output, timeout=20, what="whoami and the new size")
        # The host computes the marker, so the echo of the typed line cannot satisfy the wait.
        await session.receive_bytes("echo caf\u00e9-$((6*7))\r".encode())
        await browser.until(lambda b: "café-42".encode() in b.output, timeout=20, what="UTF-8 echo")
        await session.receive_text(json.dumps({"v": 1, "type": "ping"}))
        assert browser.envelopes[-1] == {"v": 1, "type": "pong"}
        # A frame of a type the protocol does not have ends the session, saying why.
        await session.receive_text(json.dumps({"v": 1, "type": "exec", "command": "id"}))
        await browser.until(lambda b: b.closed_with is not None, timeout=10, what="the close")
        await session.end("already ending")  # returns once the ending is done; the first reason stays

    async_to_sync(drive)()
    assert f"u={grant.username}".encode() in browser.output  # whoami's answer, not the prompt
    assert browser.closed_with == frames.CLOSE_BAD_FRAME
    assert browser.envelopes[-1] == {"v": 1, "type": "closed", "reason": "Unknown terminal frame type."}
    assert [item["type"] for item in browser.envelopes[:2]] == ["status", "status"]

    record = TerminalSession.objects.get(grant=grant)
    assert record.ended_at is not None and record.end_reason == "Unknown terminal frame type."
    recording = recording_bytes(record)
    assert hashlib.sha256(recording).hexdigest() == record.recording_sha256
    events = [json.loads(line) for line in recording.decode().splitlines()[1:]]
    recorded = "".join(event[2] for event in events if event[1] == "o").encode()
    # Every byte sent, once; then perhaps the prompt after the echo, read once the terminal was closing.
    assert recorded.startswith(browser.output), (recorded[-200:], browser.output[-200:])
    assert "café-42".encode() not in recorded[len(browser.output) :]
    assert record.bytes_out == len(recorded)
    assert ["r", "97x31"] in [event[1:] for event in events]
    assert any(event[1] == "i" and "café" in event[2] for event in events)
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert ended.detail["recording_sha256"] == record.recording_sha256
    ssm_session = aws.devcloud.runtime.sessions.get(session.ssm_session_id)
    assert ssm_session is not None
    wait_for(lambda: not ssm_session.active, timeout=10, what="the SSM session to end")


def test_the_websocket_closes_with_the_envelopes_code(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    bob, approver = make_user("bob"), make_user("approver")
    make_membership(bob, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, bob, approver)
    grant = Grant.objects.get(request=access_request)
    cookie = session_cookie(bob)
    tickets = [services.ticket_issue(user=bob, grant=grant) for _ in range(2)]

    async def refused(ticket: str, frame: dict[str, Any] | str) -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        assert (await comm.connect(timeout=10))[0]
        screen = Screen(comm)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        await comm.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))
        await screen.until(lambda s: s.closed_code is not None, timeout=10, what="the close")
        await comm.disconnect(code=screen.closed_code, timeout=15)
        return screen

    old = async_to_sync(refused)(tickets[0], {"type": "input", "data": "id\r"})  # a client of before the envelope
    assert old.closed_code == 4426
    closed = old.message("closed")
    assert closed is not None and "version 1" in closed["reason"]
    big = async_to_sync(refused)(tickets[1], json.dumps({"v": 1, "type": "input", "data": "x" * 70_000}))
    assert big.closed_code == 4413
    wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).count() == 2,
        what="both sessions recorded as ended",
    )
    reasons = list(TerminalSession.objects.filter(grant=grant).order_by("id").values_list("end_reason", flat=True))
    assert "version 1" in reasons[0] and "at most" in reasons[1]
