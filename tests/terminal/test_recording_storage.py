"""Recordings in object storage: django-storages' S3 backend on devcloud's S3, the manifest,
and reading a recording back from another web process's point of view (another MEDIA_ROOT)."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import LogbookEntry
from terminal import services
from terminal.chunks import ChunkSink
from terminal.models import RecordingChunk, RecordingState, TerminalSession
from terminal.recorder import chunk_store_for, recording_kept, upload_thread_exit
from terminal.recording import AsciicastWriter
from terminal.storage import StorageUnavailable, object_get, object_put, recording_storage, storage_probe
from terminal.sweeps import terminals_finalise_orphaned
from tests.conftest import World
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import devcloud_ssm_session
from tests.terminal.storage_helpers import UNREACHABLE, recording_bytes, use_s3_recordings
from tests.terminal.test_consumers import make_active_grant

# The upload thread writes the manifest on its own connection: committed data.
pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture
def bucket(aws: Cloud, settings: Any, tmp_path: Path) -> str:
    settings.MEDIA_ROOT = tmp_path / "media-of-web-1"
    return use_s3_recordings(settings, aws.endpoint_url)


def _ssm_status(aws: Cloud, session_id: str) -> str:
    """devcloud's status of its Session Manager session ``session_id`` (Connected, Terminated ...)."""
    session = aws.devcloud.runtime.sessions.get(session_id)
    assert session is not None, session_id
    return session.status


def _s3(aws: Cloud) -> Any:
    return boto3.client("s3", endpoint_url=aws.endpoint_url, region_name="us-east-1")


def test_the_recordings_storage_is_the_s3_bucket(bucket: str, aws: Cloud, settings: Any) -> None:
    assert type(recording_storage()).__name__ == "S3Storage"
    object_put("recordings/x/chunk-000001", b"hello")
    assert _s3(aws).get_object(Bucket=bucket, Key="recordings/x/chunk-000001")["Body"].read() == b"hello"
    assert object_get("recordings/x/chunk-000001") == b"hello"
    object_put("recordings/x/chunk-000001", b"again", replace=True)
    assert object_get("recordings/x/chunk-000001") == b"again"
    assert not any(Path(settings.MEDIA_ROOT).rglob("*")) if Path(settings.MEDIA_ROOT).exists() else True
    storage_probe("recordings/probe-test")  # writes and removes
    assert "Contents" not in _s3(aws).list_objects_v2(Bucket=bucket, Prefix="recordings/probe-test")


def test_an_unreachable_storage_fails_the_probe(aws: Cloud, settings: Any) -> None:
    use_s3_recordings(settings, aws.endpoint_url)
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            **settings.STORAGES["recordings"],
            "OPTIONS": {**settings.STORAGES["recordings"]["OPTIONS"], "endpoint_url": UNREACHABLE},
        },
    }
    with pytest.raises(StorageUnavailable):
        storage_probe("recordings/nowhere")


def _recorded(world: World) -> TerminalSession:
    """A terminal recorded through the chunk uploader into the bucket, sealed as the session does."""
    grant, user = make_active_grant(world), world.requester
    session = services.terminal_session_start(
        user=user, grant=grant, ssm_session_id="s-1", recording_path="recordings/test-one"
    )
    sink = ChunkSink(
        chunk_store_for(session_id=session.pk, prefix="recordings/test-one"),
        max_bytes=200,
        attempts=1,
        on_idle=upload_thread_exit,
    )
    writer = AsciicastWriter(sink, cols=80, rows=24, title="t")
    writer.output(b"\x1b[1mhello\x1b[0m from web-1\r\n" * 20)
    writer.input(b"uname -a\r")
    written = writer.close()
    kept = sink.kept()
    assert kept.sha256 == written
    return services.terminal_session_end(
        session=session, reason="The shell ended.", bytes_in=9, bytes_out=10, recording_sha256=written,
        recorded_seconds=kept.seconds,
    )  # fmt: skip


def test_a_recording_is_stored_in_chunks_with_a_manifest_and_plays_from_another_web_process(
    world: World, bucket: str, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    session = _recorded(world)
    rows = list(RecordingChunk.objects.filter(session=session).order_by("number"))
    assert len(rows) > 1
    joined = b""
    for row in rows:
        body = _s3(aws).get_object(Bucket=bucket, Key=row.key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == row.sha256 and row.key.startswith("recordings/test-one/chunk-")
        joined += body
    assert hashlib.sha256(joined).hexdigest() == session.recording_sha256
    assert "hello from web-1" in session.transcript and "uname -a" in session.transcript_input
    assert session.recording_state == RecordingState.COMPLETE

    # Another web process: its own, empty MEDIA_ROOT; the same bucket.
    settings.MEDIA_ROOT = tmp_path / "media-of-web-2"
    client = Client()
    client.force_login(world.auditor)
    page = client.get(reverse("terminal:recording", args=[session.pk])).content.decode()
    assert 'data-testid="recording-verified"' in page
    cast = client.get(reverse("terminal:recording-cast", args=[session.pk]))
    assert cast.status_code == 200 and cast.getvalue() == joined
    found = client.get(reverse("terminal:recordings"), {"q": "HELLO FROM"}).content.decode()
    assert reverse("terminal:recording", args=[session.pk]) in found
    assert not (tmp_path / "media-of-web-2").exists()


def test_a_changed_chunk_is_caught_and_what_is_kept_stops_before_it(
    world: World, bucket: str, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    session = _recorded(world)
    rows = list(RecordingChunk.objects.filter(session=session).order_by("number"))
    # A new version over chunk 2's key, and its row pointed at it (a new version alone is not read:
    # test_recording_cast_sealed).
    changed = _s3(aws).put_object(Bucket=bucket, Key=rows[1].key, Body=b'[0.1, "o", "rm -rf /"]\n')
    RecordingChunk.objects.filter(pk=rows[1].pk).update(version_id=changed["VersionId"])
    kept = recording_kept(session)
    assert kept.chunks == 1 and kept.problem == "chunk 2 does not match the SHA-256 in its manifest"
    client = Client()
    client.force_login(world.auditor)
    page = client.get(reverse("terminal:recording", args=[session.pk])).content.decode()
    assert 'data-testid="recording-warning"' in page and "changed after it was sealed" in page


def test_a_chunk_deleted_from_the_bucket_is_reported_removed_not_changed(world: World, bucket: str, aws: Cloud) -> None:
    session = _recorded(world)
    rows = list(RecordingChunk.objects.filter(session=session).order_by("number"))
    _s3(aws).delete_object(Bucket=bucket, Key=rows[1].key)
    client = Client()
    client.force_login(world.auditor)
    page = client.get(reverse("terminal:recording", args=[session.pk])).content.decode()
    assert 'data-testid="recording-removed"' in page and "chunk 2 was removed from storage" in page
    assert "changed after it was sealed" not in page and 'id="recording-player"' not in page
    entry = LogbookEntry.objects.get(action="recording.removed", actor=world.auditor)
    assert entry.detail["terminal_session"] == session.pk
    assert not LogbookEntry.objects.filter(action="recording.viewed", actor=world.auditor).exists()


def test_the_sweep_seals_a_silent_terminal_as_partial_and_ends_its_ssm_session(
    world: World, bucket: str, aws: Cloud, settings: Any
) -> None:
    # Both Session Manager sessions are devcloud's own: the sweep's TerminateSession is the real call.
    grant = make_active_grant(world)
    dead_id, alive_id = devcloud_ssm_session(aws, grant), devcloud_ssm_session(aws, grant)
    session = services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id=dead_id, recording_path="recordings/dead"
    )
    alive = services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id=alive_id, recording_path="recordings/alive"
    )
    assert _ssm_status(aws, dead_id) == _ssm_status(aws, alive_id) == "Connected"
    sink = ChunkSink(
        chunk_store_for(session_id=session.pk, prefix="recordings/dead"),
        max_bytes=10**6,
        attempts=1,
        on_idle=upload_thread_exit,
    )
    writer = AsciicastWriter(sink, cols=80, rows=24, title="t")
    writer.output(b"kept before the crash\r\n")
    sink.cut()
    writer.output(b"never uploaded: the process died\r\n")  # waiting in memory, lost with the process
    wait_for(lambda: sink.kept().chunks == 1, timeout=10, what="the first chunk")
    stored = sink.kept()
    stale = timezone.now() - timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS + 5)
    TerminalSession.objects.filter(pk=session.pk).update(heartbeat_at=stale)

    assert terminals_finalise_orphaned() == 1
    assert terminals_finalise_orphaned() == 0  # once
    sealed = TerminalSession.objects.get(pk=session.pk)
    assert sealed.ended_at is not None and sealed.recording_state == RecordingState.PARTIAL
    assert sealed.recording_sha256 == stored.sha256 and sealed.recorded_seconds == stored.seconds
    assert "kept before the crash" in sealed.transcript and "never uploaded" not in sealed.transcript
    assert "web process" in sealed.end_reason and "stops at 0:00:00" in sealed.recording_note
    assert _ssm_status(aws, dead_id) == "Terminated"  # the sweep's TerminateSession reached devcloud
    assert _ssm_status(aws, alive_id) == "Connected"  # the live terminal's is untouched
    assert TerminalSession.objects.get(pk=alive.pk).ended_at is None
    entry = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=session.pk)
    assert entry.actor is None and entry.detail["sealed_by"] == "sweep"
    assert entry.detail["ssm_session_terminated"] is True and entry.detail["recording_state"] == "partial"
    assert entry.detail["recording_sha256"] == stored.sha256

    client = Client()
    client.force_login(world.auditor)
    page = client.get(reverse("terminal:recording", args=[session.pk])).content.decode()
    assert 'data-testid="recording-verified"' in page and 'data-testid="recording-partial"' in page
    assert client.get(reverse("terminal:recording-cast", args=[session.pk])).getvalue() == object_get(
        "recordings/dead/chunk-000001"
    )
    listing = client.get(reverse("terminal:recordings")).content.decode()
    assert "Partial" in listing and "web process serving this terminal stopped" in listing
    sink.close()  # the test's own thread; the sealed record is not touched again
    assert TerminalSession.objects.get(pk=session.pk).recording_sha256 == stored.sha256


def test_migrate_recordings_moves_old_files_into_the_bucket_checked(
    world: World, bucket: str, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    old_media = Path(settings.MEDIA_ROOT)
    made = []
    for number in range(2):
        grant = make_active_grant(world)
        relative = services.recording_relative_path(grant=grant)
        writer = AsciicastWriter(old_media / relative, cols=80, rows=24, title="old")
        session = services.terminal_session_start(
            user=world.requester, grant=grant, ssm_session_id=f"s-{number}", recording_path=relative
        )
        for _ in range(50):
            writer.output(f"old recording {number}\r\n".encode())
        made.append(
            services.terminal_session_end(
                session=session, reason="The shell ended.", bytes_in=0, bytes_out=1, recording_sha256=writer.close()
            )
        )
    original = (old_media / made[0].recording_path).read_bytes()
    (old_media / made[1].recording_path).write_bytes(b"changed on the web host\n")
    settings.PASSPORT_RECORDING_CHUNK_BYTES = 500

    with pytest.raises(CommandError):
        call_command("migrate_recordings", "--from", str(old_media), stdout=io.StringIO(), stderr=io.StringIO())
    first, second = (TerminalSession.objects.get(pk=session.pk) for session in made)
    assert first.recording_path.startswith("recordings/") and first.recording_path != made[0].recording_path
    assert second.recording_path == made[1].recording_path  # the changed file is left as it was
    rows = list(first.chunks.order_by("number"))
    assert len(rows) > 1 and all(row.size <= 500 + 200 for row in rows)
    assert recording_bytes(first) == original
    entry = LogbookEntry.objects.get(action="recording.migrated")
    assert entry.detail == {
        "terminal_session": first.pk, "from": made[0].recording_path, "to": first.recording_path,
        "recording_sha256": first.recording_sha256, "recording_chunks": len(rows),
    }  # fmt: skip

    # Another web process, with no copy of the old files, plays it.
    settings.MEDIA_ROOT = tmp_path / "elsewhere"
    client = Client()
    client.force_login(world.auditor)
    page = client.get(reverse("terminal:recording", args=[first.pk])).content.decode()
    assert 'data-testid="recording-verified"' in page
    assert client.get(reverse("terminal:recording-cast", args=[first.pk])).getvalue() == original
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("migrate_recordings", "--from", str(old_media), stdout=out, stderr=io.StringIO())
    assert "0 recording(s) migrated, 1 not." in out.getvalue()  # the first is not done twice
