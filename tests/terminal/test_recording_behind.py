"""Recording storage slower than the terminal (terminal.chunks ``behind``): the browser terminal reads
no more of the shell until storage catches up, so the chunks waiting for it stay bounded in the web
process; the shell waits, nothing is dropped, and the recording is sealed complete with every byte.

In this process (the storage is slowed through botocore's hooks on its client, tests.terminal.
storage_helpers.storage_is_slow), against devcloud's S3 and a devcloud host. Before the fix the
chunks piled up for as long as the shell printed faster than storage took them."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal import chunks, live_recording
from terminal.models import TerminalSession
from terminal.recorder import recording_kept, recording_read
from terminal.session import ShellSession
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import ListBrowser, ready_grant, signed_in_key
from tests.terminal.storage_helpers import recording_bytes, storage_is_slow, use_s3_recordings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]

CHUNK = 64 * 1024
BEHIND = 256 * 1024
LAST = 200000


class AckingBrowser(ListBrowser):
    """A page that reads everything: each ``mark`` acknowledged as it comes."""

    session: ShellSession | None = None

    async def send_text(self, text: str) -> None:
        await super().send_text(text)
        envelope = json.loads(text)
        if envelope.get("type") == "mark" and self.session is not None:
            ack = json.dumps({"v": 1, "type": "ack", "id": envelope["id"]})
            asyncio.get_running_loop().create_task(self.session.receive_text(ack))


def _recording_to_s3_in_small_chunks(
    settings: Any, aws: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recordings to devcloud's S3, in chunks of ``CHUNK``, the sink behind past ``BEHIND``."""
    settings.MEDIA_ROOT = tmp_path / "media"
    use_s3_recordings(settings, aws.endpoint_url)
    settings.PASSPORT_RECORDING_CHUNK_BYTES = CHUNK
    monkeypatch.setattr(chunks, "BEHIND_BYTES", BEHIND)


def test_storage_far_behind_holds_the_shell_and_the_recording_keeps_every_byte(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _recording_to_s3_in_small_chunks(settings, aws, tmp_path, monkeypatch)
    alice, _approver, access_request, grant = ready_grant(prod)
    session_key = signed_in_key(alice)
    browser = AckingBrowser()
    seen: dict[str, Any] = {"waiting": 0, "slowed": []}

    async def drive() -> None:
        session = ShellSession(user=alice, grant_id=grant.pk, session_key=session_key, browser=browser)
        browser.session = session
        assert await session.load()
        session.start()
        await browser.until(lambda b: b.envelope("ready"), timeout=60, what="a logged-in shell")
        assert session.sink is not None
        # Every chunk takes a third of a second to store: the shell prints far faster than that.
        with storage_is_slow(0.3) as slowed:
            command = f"seq 1 {LAST}; echo done$((6*7))\r"
            await session.receive_text(json.dumps({"v": 1, "type": "input", "data": command}))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 180
            while b"done42" not in browser.output:
                assert loop.time() < deadline, f"no done: {browser.output[-300:]!r}"
                seen["waiting"] = max(seen["waiting"], session.sink.waiting)
                await asyncio.sleep(0.01)
            seen["slowed"] = list(slowed)
        await session.end("test over")

    async_to_sync(drive)()
    # At most BEHIND waited for storage, and what was cut while it did (a chunk, and one read of output).
    assert seen["waiting"] <= BEHIND + 2 * CHUNK, f"{seen['waiting']} bytes waited for storage"
    assert len(seen["slowed"]) > (LAST * 7) // CHUNK // 2  # it was slowed, chunk after chunk

    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="sealed"
    )
    assert record.recording_state == "complete"
    lines = recording_bytes(record).decode().splitlines()
    recorded = "".join(event[2] for event in map(json.loads, lines[1:]) if event[1] == "o").encode()
    assert recorded == browser.output  # every byte sent, once, in order
    printed = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", recorded).replace(b"\r", b"").split(b"\n")
    assert [int(line) for line in printed if line.isdigit()] == list(range(1, LAST + 1))
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert ended.detail["recording_state"] == "complete"


def test_an_ending_while_storage_is_far_behind_waits_a_bounded_time_then_seals_what_was_kept_partial(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ending waits for the rest on the loop, at most STORED_AT_CLOSE_SECONDS (before, on a thread
    # of the default executor, with no bound); storage that did not keep up by then leaves a partial
    # recording that says so, and what it keeps plays.
    _recording_to_s3_in_small_chunks(settings, aws, tmp_path, monkeypatch)
    monkeypatch.setattr(live_recording, "STORED_AT_CLOSE_SECONDS", 0.5)
    alice, _approver, access_request, grant = ready_grant(prod)
    session_key = signed_in_key(alice)
    browser = AckingBrowser()
    seen: dict[str, float] = {}

    async def drive() -> None:
        session = ShellSession(user=alice, grant_id=grant.pk, session_key=session_key, browser=browser)
        browser.session = session
        assert await session.load()
        session.start()
        await browser.until(lambda b: b.envelope("ready"), timeout=60, what="a logged-in shell")
        assert session.sink is not None
        with storage_is_slow(1.0):
            command = f"seq 1 {LAST}\r"
            await session.receive_text(json.dumps({"v": 1, "type": "input", "data": command}))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not (session.sink.behind and session.sink.kept().chunks):  # behind, a chunk stored
                assert loop.time() < deadline, "storage never fell behind"
                await asyncio.sleep(0.01)
            started = loop.time()
            await session.end("test over")
            seen["ending"] = loop.time() - started

    async_to_sync(drive)()
    # Half a second for the rest, the chunk being stored (a second), half a second for the last bytes.
    assert seen["ending"] < 10, f"the ending took {seen['ending']:.1f} s"
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="sealed"
    )
    assert record.recording_state == "partial"
    assert record.recording_note.startswith("Recording storage did not keep up; the recording stops at")
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert ended.detail["recording_state"] == "partial"
    sealed = {"sealed_sha256": record.recording_sha256, "sealed_chunks": ended.detail["recording_chunks"]}
    kept = recording_kept(record, **sealed)
    assert kept.sha256 == record.recording_sha256 and kept.chunks == sealed["sealed_chunks"] and not kept.problem
    lines = b"".join(recording_read(record, **sealed)[1]).decode().splitlines()
    recorded = "".join(event[2] for event in map(json.loads, lines[1:]) if event[1] == "o").encode()
    assert b"\r\n100\r\n101\r\n" in recorded  # some of what it printed
    assert browser.output[: len(recorded)] == recorded  # what was shown, up to a point
