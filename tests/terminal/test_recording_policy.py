"""PASSPORT_RECORDING_UNAVAILABLE, both ways, at the start of a terminal and in the middle of one:
a real devcloud host, the real worker, the recordings in devcloud's S3 (or nowhere reachable)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal.live_recording import REFUSED_UNRECORDABLE, UNRECORDED_AT_START, UNRECORDED_FROM_NOW
from terminal.models import RecordingState, TerminalSession
from terminal.recorder import recording_kept
from terminal.session import ShellSession
from tests.factories import make_membership, make_user
from tests.stack import Cloud
from tests.terminal.helpers import ListBrowser, active_request, signed_in_key
from tests.terminal.storage_helpers import UNREACHABLE, use_s3_recordings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


@pytest.fixture
def fast(settings: Any, aws: Cloud) -> Any:
    settings.PASSPORT_RECORDING_CHUNK_SECONDS = 1
    settings.PASSPORT_RECORDING_UPLOAD_ATTEMPTS = 2
    use_s3_recordings(settings, aws.endpoint_url)
    return settings


def _break_storage(settings: Any) -> None:
    recordings = settings.STORAGES["recordings"]
    options = {**recordings["OPTIONS"], "endpoint_url": UNREACHABLE}
    settings.STORAGES = {**settings.STORAGES, "recordings": {**recordings, "OPTIONS": options}}


def _grant(prod: AwsAccount, name: str) -> tuple[Any, Grant]:
    person, approver = make_user(name), make_user(f"{name}-approver")
    make_membership(person, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, person, approver)
    return person, Grant.objects.select_related("instance").get(request=access_request)


def _session(person: Any, grant: Grant, browser: ListBrowser) -> ShellSession:
    """Made outside the event loop (signing in is ORM work); started inside it."""
    return ShellSession(user=person, grant_id=grant.pk, session_key=signed_in_key(person), browser=browser)


async def _type(session: ShellSession, text: str) -> None:
    await session.receive_text(json.dumps({"v": 1, "type": "input", "data": text}))


def test_refuse_at_start_opens_nothing_and_says_why(prod: AwsAccount, fast: Any) -> None:
    _break_storage(fast)
    person, grant = _grant(prod, "rita")
    browser = ListBrowser()

    session = _session(person, grant, browser)

    async def drive() -> None:
        session.start()
        await browser.until(lambda b: b.closed_with is not None, timeout=30, what="the refusal")

    async_to_sync(drive)()
    assert browser.envelope("closed") == {"v": 1, "type": "closed", "reason": REFUSED_UNRECORDABLE}
    assert browser.envelope("ready") is None
    assert not TerminalSession.objects.filter(grant=grant).exists()
    refused = LogbookEntry.objects.get(action="terminal.refused", request_id=grant.request_id)
    assert refused.detail["reason"] == "recording storage unavailable"
    # Refused before any Session Manager session was asked for.
    assert not LogbookEntry.objects.filter(action="session.started", request_id=grant.request_id).exists()


def test_allow_at_start_runs_unrecorded_and_the_logbook_says_so(prod: AwsAccount, fast: Any) -> None:
    fast.PASSPORT_RECORDING_UNAVAILABLE = "allow"
    _break_storage(fast)
    person, grant = _grant(prod, "una")
    browser = ListBrowser()

    session = _session(person, grant, browser)

    async def drive() -> None:
        session.start()
        await browser.until(lambda b: b.envelope("ready"), timeout=60, what="a logged-in shell")
        await _type(session, "echo un$((40+2))recorded\r")
        await browser.until(lambda b: b"un42recorded" in b.output, timeout=20, what="the echo")
        await session.end("done")

    async_to_sync(drive)()
    assert {"v": 1, "type": "status", "message": UNRECORDED_AT_START} in browser.envelopes
    record = TerminalSession.objects.get(grant=grant)
    assert record.recording_state == RecordingState.FAILED and record.recording_sha256 == ""
    assert record.recording_note.startswith("Not recorded: recording storage was unavailable")
    assert not record.chunks.exists()
    unrecorded = LogbookEntry.objects.get(action="terminal.unrecorded", request_id=grant.request_id)
    assert unrecorded.detail["terminal_session"] == record.pk
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=grant.request_id)
    assert ended.detail["recording_state"] == "failed"


@pytest.mark.parametrize("policy", ["refuse", "allow"])
def test_storage_failing_mid_session(prod: AwsAccount, fast: Any, policy: str) -> None:
    fast.PASSPORT_RECORDING_UNAVAILABLE = policy
    person, grant = _grant(prod, f"mid-{policy}")
    browser = ListBrowser()
    working = fast.STORAGES

    session = _session(person, grant, browser)

    async def drive() -> None:
        session.start()
        await browser.until(lambda b: b.envelope("ready"), timeout=60, what="a logged-in shell")
        await _type(session, "echo before$((1+1))\r")
        await browser.until(lambda b: b"before2" in b.output, timeout=20, what="the first echo")
        sink = session.sink
        assert sink is not None
        written = sink.written_seconds
        deadline = time.monotonic() + 20
        while sink.kept().seconds < written:  # everything up to the echo, stored
            assert time.monotonic() < deadline, "the first echo was never stored"
            await asyncio.sleep(0.2)
        _break_storage(fast)
        await _type(session, "echo after$((2+1))\r")
        await browser.until(lambda b: b"after3" in b.output, timeout=20, what="the second echo")
        if policy == "refuse":
            await browser.until(lambda b: b.closed_with is not None, timeout=30, what="the close")
            await session.end("not this reason")  # returns once the ending (and its sealing) is done
        else:
            await browser.until(
                lambda b: {"v": 1, "type": "status", "message": UNRECORDED_FROM_NOW} in b.envelopes,
                timeout=30,
                what="the notice",
            )
            await _type(session, "echo still$((3+1))\r")
            await browser.until(lambda b: b"still4" in b.output, timeout=20, what="the session going on")
            await session.end("done")

    async_to_sync(drive)()
    record = TerminalSession.objects.get(grant=grant)
    assert record.recording_state == RecordingState.PARTIAL
    assert record.recording_note.startswith("Recording storage failed; the recording stops at")
    fast.STORAGES = working  # storage is back: what was kept plays, and stops before the failure
    kept = recording_kept(record)
    assert kept.sha256 == record.recording_sha256 and kept.seconds == record.recorded_seconds
    assert "before2" in kept.transcript.output and "still4" not in kept.transcript.output
    action = "terminal.recording_failed" if policy == "refuse" else "terminal.unrecorded"
    stopped = LogbookEntry.objects.get(action=action, request_id=grant.request_id)
    assert stopped.detail["terminal_session"] == record.pk
    if policy == "refuse":
        closed = browser.envelope("closed")
        assert closed is not None and "recording storage failed" in closed["reason"]
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=grant.request_id)
    assert ended.detail["recording_state"] == "partial"
    assert ended.detail["recording_sha256"] == record.recording_sha256 != ""
