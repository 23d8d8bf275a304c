"""The orphan sweep (terminal.sweeps) when recording storage fails to answer while it reads a
recording back: a blip is not sealed into the Logbook as the recording's end. The sweep leaves the
terminal for its next run (its Session Manager session is still terminated), and only a storage
that stays unreadable past PASSPORT_RECORDING_SWEEP_UNREADABLE_SECONDS gets it sealed with what
could be read, the note naming the storage failure. What the Logbook seals is the chunks its digest
covers, so an intact recording is never shown as changed once storage answers again; and no chunk
is stored into a session once it is sealed.

The 5xx is devcloud's S3 answer as botocore hands it over (storage_helpers.storage_fails_to_read).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal import services
from terminal.chunks import Chunk, ChunkSink
from terminal.models import RecordingChunk, RecordingState, TerminalSession
from terminal.recorder import chunk_store_for, upload_thread_exit
from terminal.recording import AsciicastWriter
from terminal.storage import object_get
from terminal.sweeps import terminals_finalise_orphaned
from tests.conftest import World
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import devcloud_ssm_session
from tests.terminal.storage_helpers import storage_fails_to_read, use_s3_recordings
from tests.terminal.test_consumers import make_active_grant

# The upload thread writes the manifest on its own connection: committed data.
pytestmark = pytest.mark.usefixtures("live_db")

CHANGED = "changed after it was sealed"


@pytest.fixture
def bucket(aws: Cloud, settings: Any, tmp_path: Path) -> str:
    settings.MEDIA_ROOT = tmp_path / "media"
    return use_s3_recordings(settings, aws.endpoint_url)


@pytest.fixture
def ssm(world: World, aws: Cloud) -> tuple[Grant, str]:
    """A grant and a Session Manager session devcloud started for it on web-1: the sweep's
    TerminateSession is the real call."""
    grant = make_active_grant(world)
    return grant, devcloud_ssm_session(aws, grant)


def _ssm_status(aws: Cloud, session_id: str) -> str:
    session = aws.devcloud.runtime.sessions.get(session_id)
    assert session is not None, session_id
    return session.status


def _orphan(
    world: World, ssm: tuple[Grant, str], *, silent_for: float, chunks: int = 3
) -> tuple[TerminalSession, ChunkSink]:
    """A terminal whose web process stored ``chunks`` chunks and then fell silent ``silent_for`` seconds ago."""
    grant, ssm_session_id = ssm
    session = services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id=ssm_session_id, recording_path="recordings/blip"
    )
    sink = ChunkSink(
        chunk_store_for(session_id=session.pk, prefix="recordings/blip"),
        max_bytes=10**6,
        attempts=1,
        on_idle=upload_thread_exit,
    )
    writer = AsciicastWriter(sink, cols=80, rows=24, title="t")
    for number in range(1, chunks + 1):
        writer.output(f"line {number}: cat /etc/shadow\r\n".encode())
        sink.cut()
    wait_for(lambda: sink.kept().chunks == chunks, timeout=10, what=f"{chunks} chunks stored")
    TerminalSession.objects.filter(pk=session.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=silent_for))
    return session, sink


def _page(world: World, session: TerminalSession) -> str:
    client = Client()
    client.force_login(world.auditor)
    return client.get(reverse("terminal:recording", args=[session.pk])).content.decode()


def _sealing(session: TerminalSession) -> LogbookEntry:
    return LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=session.pk)


@pytest.mark.parametrize("unreadable", ["chunk-000001", "chunk-000002"])
def test_a_storage_blip_leaves_the_terminal_for_the_next_sweep_which_seals_it_whole(
    world: World, bucket: str, aws: Cloud, settings: Any, ssm: tuple[Grant, str], unreadable: str
) -> None:
    session, sink = _orphan(world, ssm, silent_for=settings.PASSPORT_RECORDING_STALE_SECONDS + 5)
    with storage_fails_to_read(unreadable) as failed:
        assert terminals_finalise_orphaned() == 0
    assert failed  # the 500 was answered to the sweep's read
    assert TerminalSession.objects.get(pk=session.pk).ended_at is None
    assert not LogbookEntry.objects.filter(action="terminal.ended", detail__terminal_session=session.pk).exists()
    # The process is gone: its Session Manager session is ended anyway, in devcloud itself.
    assert _ssm_status(aws, ssm[1]) == "Terminated"

    assert terminals_finalise_orphaned() == 1  # storage answers again
    sealed = TerminalSession.objects.get(pk=session.pk)
    stored = sink.kept()
    assert sealed.recording_state == RecordingState.PARTIAL and sealed.recording_sha256 == stored.sha256
    assert "line 3" in sealed.transcript
    entry = _sealing(session)
    assert entry.detail["recording_chunks"] == 3 and entry.detail["recording_sha256"] == stored.sha256
    page = _page(world, session)
    assert 'data-testid="recording-verified"' in page and CHANGED not in page
    sink.close()


def test_storage_unreadable_past_the_limit_seals_what_was_read_and_says_why(
    world: World, bucket: str, settings: Any, ssm: tuple[Grant, str]
) -> None:
    session, sink = _orphan(world, ssm, silent_for=settings.PASSPORT_RECORDING_SWEEP_UNREADABLE_SECONDS + 5)
    with storage_fails_to_read("chunk-000002"):
        assert terminals_finalise_orphaned() == 1
    first = object_get("recordings/blip/chunk-000001")
    sealed = TerminalSession.objects.get(pk=session.pk)
    assert sealed.recording_state == RecordingState.PARTIAL
    assert sealed.recording_sha256 == hashlib.sha256(first).hexdigest()
    assert "could not be read from storage (InternalError, HTTP 500)" in sealed.recording_note
    assert "line 1" in sealed.transcript and "line 2" not in sealed.transcript
    entry = _sealing(session)
    assert entry.detail["recording_chunks"] == 1  # what the digest covers, not the manifest's 3 rows
    assert RecordingChunk.objects.filter(session_id=session.pk).count() == 3

    # Storage answers again: what was sealed is intact, and only it is played.
    page = _page(world, session)
    assert CHANGED not in page and "removed" not in page
    assert 'data-testid="recording-verified"' in page and 'data-testid="recording-partial"' in page
    client = Client()
    client.force_login(world.auditor)
    cast = client.get(reverse("terminal:recording-cast", args=[session.pk]))
    assert cast.getvalue() == first
    sink.close()


def test_storage_unreadable_from_the_first_chunk_past_the_limit_is_failed_naming_storage_not_the_process(
    world: World, bucket: str, settings: Any, ssm: tuple[Grant, str]
) -> None:
    session, sink = _orphan(world, ssm, silent_for=settings.PASSPORT_RECORDING_SWEEP_UNREADABLE_SECONDS + 5)
    with storage_fails_to_read("chunk-000001"):
        assert terminals_finalise_orphaned() == 1
    sealed = TerminalSession.objects.get(pk=session.pk)
    assert sealed.recording_state == RecordingState.FAILED and sealed.recording_sha256 == ""
    assert "could not be read from storage" in sealed.recording_note
    assert "before any of the recording was stored" not in sealed.recording_note
    page = _page(world, session)
    assert CHANGED not in page and 'data-testid="recording-failed"' in page
    sink.close()


def test_no_chunk_is_stored_into_a_session_once_it_is_sealed(
    world: World, bucket: str, settings: Any, ssm: tuple[Grant, str]
) -> None:
    """The sweep sealed a terminal whose process was only slow, not gone: what it then uploads is refused."""
    session, sink = _orphan(world, ssm, silent_for=settings.PASSPORT_RECORDING_STALE_SECONDS + 5, chunks=2)
    assert terminals_finalise_orphaned() == 1
    from terminal.recorder import RecordingSealed

    store = chunk_store_for(session_id=session.pk, prefix="recordings/blip")
    late = b'[9.0, "o", "written after the seal"]\n'
    with pytest.raises(RecordingSealed):
        store(Chunk(3, late, hashlib.sha256(late).hexdigest(), 9.0), False)
    assert RecordingChunk.objects.filter(session_id=session.pk).count() == 2
    assert _sealing(session).detail["recording_chunks"] == 2
    assert 'data-testid="recording-verified"' in _page(world, session)
    sink.close()
