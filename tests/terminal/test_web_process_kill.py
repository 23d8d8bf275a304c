"""kill -9 of the web process in the middle of a terminal: a real daphne serving the terminal
WebSocket, the recording uploading in chunks to devcloud's S3, the real worker and devcloud.

What was kept plays and stops within a few seconds of the kill; the sweep (terminal.sweeps, the
beat task ``finalise_orphaned_terminals``) seals it as partial, terminates the Session Manager
session, and the Logbook says so. This test process is another web process, with its own
MEDIA_ROOT: it plays the recording the killed one made.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal import services
from terminal.models import RecordingState, TerminalSession
from terminal.recorder import recording_kept
from terminal.sweeps import terminals_finalise_orphaned
from tests.factories import make_membership, make_user
from tests.stack import Cloud, WorkerProcess, start_daphne, wait_for
from tests.terminal.helpers import active_request, session_cookie
from tests.terminal.storage_helpers import recording_bytes, use_s3_recordings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def _start_daphne(worker: WorkerProcess, tmp_path: Path, bucket: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **worker.env,
        "PASSPORT_VAR_DIR": str(tmp_path / "web-1"),  # its own MEDIA_ROOT, never read by anyone else
        "PASSPORT_RECORDINGS_BUCKET": bucket,
        "PASSPORT_RECORDING_CHUNK_SECONDS": "1",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
    }
    return start_daphne(env, tmp_path / "daphne.log")


async def _until(ws: Any, seen: dict[str, Any], predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(seen):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {what} within {timeout} s: {seen['envelopes']} {seen['output'][-300:]!r}")
        message = await asyncio.wait_for(ws.recv(), remaining)
        if isinstance(message, bytes):
            seen["output"] += message
        else:
            seen["envelopes"].append(json.loads(message))


def test_kill_9_of_the_web_process_leaves_a_partial_playable_recording_and_the_sweep_ends_it(
    prod: AwsAccount,
    aws: Cloud,
    worker: WorkerProcess,
    settings: Any,
    tmp_path: Path,
) -> None:
    bucket = use_s3_recordings(settings, aws.endpoint_url)
    settings.MEDIA_ROOT = tmp_path / "web-2-media"
    person, approver = make_user("kim"), make_user("kim-approver")
    make_membership(person, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, person, approver)
    grant = Grant.objects.get(request=access_request)
    cookie = session_cookie(person)
    ticket = services.ticket_issue(user=person, grant=grant)
    daphne, port = _start_daphne(worker, tmp_path, bucket)
    seen: dict[str, Any] = {"envelopes": [], "output": b""}
    try:

        async def drive() -> float:
            url = f"ws://127.0.0.1:{port}/ws/terminal/{grant.pk}/?ticket={ticket}"
            headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
            async with websockets.connect(url, additional_headers=headers) as ws:
                await _until(ws, seen, lambda s: any(e["type"] == "ready" for e in s["envelopes"]), 60, "ready")
                await ws.send(json.dumps({"v": 1, "type": "input", "data": "echo kept$((6*7))\r"}))
                await _until(ws, seen, lambda s: b"kept42" in s["output"], 20, "the first echo")
                # Stored within a chunk's time (1 s here): wait until it is, as the killed process would.
                record = await asyncio.to_thread(_record_of, grant)
                await asyncio.to_thread(
                    wait_for, lambda: "kept42" in _kept_text(record), timeout=20, what="the echo stored"
                )
                daphne.kill()  # SIGKILL: no teardown, no last upload, no Logbook entry from the web process
                return time.time()

        killed_at = asyncio.run(drive())
        daphne.wait(timeout=10)
    finally:
        if daphne.poll() is None:
            daphne.kill()
            daphne.wait(timeout=10)
    record = TerminalSession.objects.get(grant=grant)
    assert record.ended_at is None  # nobody sealed it: the web process died
    assert not LogbookEntry.objects.filter(action="terminal.ended", request_id=access_request.pk).exists()
    ssm = aws.devcloud.runtime.sessions.get(record.ssm_session_id)
    assert ssm is not None
    # Like AWS, devcloud keeps a session whose client went away (ResumeSession could reconnect
    # it): the killed process's data channel leaves it Disconnected, and nothing but the sweep's
    # TerminateSession ends it (the idle timeout is 20 minutes).
    wait_for(lambda: ssm.status == "Disconnected", timeout=10, what="the SSM session Disconnected")
    time.sleep(1)
    assert ssm.status == "Disconnected" and ssm.active
    settings.PASSPORT_RECORDING_STALE_SECONDS = 3
    wait_for(lambda: terminals_finalise_orphaned() or TerminalSession.objects.get(pk=record.pk).ended_at, timeout=30,
             what="the sweep to seal the terminal")  # fmt: skip
    record.refresh_from_db()
    assert record.recording_state == RecordingState.PARTIAL
    assert "web process serving this terminal stopped" in record.end_reason
    assert ssm.status == "Terminated" and not ssm.active  # by the sweep's TerminateSession

    kept = recording_kept(record)
    assert not kept.problem and kept.sha256 == record.recording_sha256
    kept_bytes = recording_bytes(record)
    lines = kept_bytes.decode().splitlines()
    header, events = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]  # every line whole: playable
    assert header["env"] == {"TERM": "xterm-256color"}  # what the browser terminal asks the instance for
    assert "kept42" in "".join(event[2] for event in events if event[1] == "o")
    # It stops within a few seconds of the kill (chunks go every second; the header's time is whole seconds).
    stopped_at = header["timestamp"] + record.recorded_seconds
    assert killed_at - stopped_at < 4, (killed_at, stopped_at)
    assert record.recorded_seconds == pytest.approx(events[-1][0])

    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert ended.actor is None and ended.detail["sealed_by"] == "sweep"
    assert ended.detail["ssm_session_terminated"] is True and ended.detail["recording_state"] == "partial"
    assert ended.detail["recording_sha256"] == record.recording_sha256

    # This process is another web process, with its own MEDIA_ROOT: it plays what the dead one made.
    auditor = make_user("kim-auditor", is_auditor=True)
    client = Client()
    client.force_login(auditor)
    page = client.get(reverse("terminal:recording", args=[record.pk])).content.decode()
    assert 'data-testid="recording-verified"' in page and 'data-testid="recording-partial"' in page
    assert client.get(reverse("terminal:recording-cast", args=[record.pk])).getvalue() == kept_bytes
    assert not Path(django_settings.MEDIA_ROOT).exists()
    assert not list((tmp_path / "web-1").rglob("*.cast"))  # nothing of it on the dead web host's disk


def _record_of(grant: Grant) -> TerminalSession:
    from django.db import connection

    try:
        return wait_for(lambda: TerminalSession.objects.filter(grant=grant).first(), timeout=20, what="the record")
    finally:
        connection.close()


def _kept_text(record: TerminalSession) -> str:
    from django.db import connection

    try:
        return recording_kept(record).transcript.output
    finally:
        connection.close()
