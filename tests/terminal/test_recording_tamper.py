"""A recording removed on purpose, from the bucket or from the database, is named as removed on its
page and in the Logbook, and the full verification finds it without anyone opening it; so is a
manifest row pointed at another chunk; a storage that fails to answer is still "could not be read"."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from audit.models import LogbookEntry
from terminal.models import RecordingChunk, TerminalSession
from tests.conftest import World
from tests.stack import Cloud
from tests.terminal.storage_helpers import UNREACHABLE, use_s3_recordings
from tests.terminal.test_recording_storage import _recorded

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture
def bucket(aws: Cloud, settings: Any, tmp_path: Path) -> str:
    """A recordings bucket as ensure_recordings_bucket makes it (versioning, Object Lock)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return use_s3_recordings(settings, aws.endpoint_url)


REASSURING = "says nothing about the recording being changed"


def _s3(aws: Cloud) -> Any:
    return boto3.client("s3", endpoint_url=aws.endpoint_url, region_name="us-east-1")


def _page(world: World, session: TerminalSession) -> str:
    client = Client()
    client.force_login(world.auditor)
    return client.get(reverse("terminal:recording", args=[session.pk])).content.decode()


def _verify(*args: str) -> tuple[int, str]:
    """verify_logbook's exit code and everything it said."""
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_logbook", "--jobs", "1", *args, stdout=out, stderr=err)
    except CommandError as failure:
        return failure.returncode, out.getvalue() + err.getvalue() + str(failure)
    return 0, out.getvalue() + err.getvalue()


def _keys(session: TerminalSession) -> list[str]:
    return list(RecordingChunk.objects.filter(session=session).order_by("number").values_list("key", flat=True))


def test_the_sealing_entry_counts_the_chunks_and_an_untouched_recording_passes(world: World, bucket: str) -> None:
    session = _recorded(world)
    entry = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=session.pk)
    assert entry.detail["recording_chunks"] == len(_keys(session)) > 1
    code, said = _verify()
    assert code == 0 and "recordings checked" in said
    assert 'data-testid="recording-verified"' in _page(world, session)


def test_chunks_deleted_from_the_bucket_are_found_by_verification_and_named_removed(
    world: World, bucket: str, aws: Cloud
) -> None:
    session = _recorded(world)
    keys = _keys(session)
    for key in keys:
        _s3(aws).delete_object(Bucket=bucket, Key=key)  # the portal's own credentials: a delete marker each
    code, said = _verify()
    assert code == 11, said
    assert f"terminal session {session.pk} " in said and "removed from storage" in said
    assert "recording-removed" in said

    page = _page(world, session)
    assert 'data-testid="recording-removed"' in page and "chunk 1 was removed from storage" in page
    assert REASSURING not in page and "could not be read" not in page and 'id="recording-player"' not in page
    entry = LogbookEntry.objects.get(action="recording.removed", actor=world.auditor)
    assert entry.detail["terminal_session"] == session.pk and "removed" in entry.detail["problem"]
    assert not LogbookEntry.objects.filter(action__in=["recording.missing", "recording.viewed"]).exists()

    # Object Lock: every version is still there, and even the portal cannot delete one.
    versions = _s3(aws).list_object_versions(Bucket=bucket, Prefix=session.recording_path + "/")["Versions"]
    assert sorted(version["Key"] for version in versions) == keys
    with pytest.raises(Exception, match="AccessDenied"):
        _s3(aws).delete_object(Bucket=bucket, Key=keys[0], VersionId=versions[0]["VersionId"])


def test_manifest_rows_deleted_from_the_database_read_as_removed_not_as_lost_storage(
    world: World, bucket: str, aws: Cloud
) -> None:
    session = _recorded(world)
    keys = _keys(session)
    RecordingChunk.objects.filter(session=session).delete()  # the insider's one statement
    for key in keys:  # every object still there, intact
        _s3(aws).head_object(Bucket=bucket, Key=key)

    page = _page(world, session)
    assert 'data-testid="recording-removed"' in page and "manifest" in page and "was removed" in page
    assert "missing from storage" not in page and REASSURING not in page
    entry = LogbookEntry.objects.get(action="recording.removed", actor=world.auditor)
    assert "manifest" in entry.detail["problem"]
    assert not LogbookEntry.objects.filter(action="recording.missing").exists()

    code, said = _verify()
    assert code == 11 and f"terminal session {session.pk} " in said
    assert f"its manifest was removed from the database ({len(keys)} object(s) are still under" in said


def test_the_last_manifest_row_deleted_is_counted_against_the_sealing_entry(world: World, bucket: str) -> None:
    session = _recorded(world)
    count = len(_keys(session))
    RecordingChunk.objects.filter(session=session, number=count).delete()  # what is left still plays
    page = _page(world, session)
    assert 'data-testid="recording-removed"' in page and f"chunk {count} was removed from the manifest" in page
    code, said = _verify()
    assert code == 11 and f"chunk(s) {count} removed from the manifest" in said


def test_a_storage_that_fails_to_answer_is_could_not_be_read_not_removed(
    world: World, bucket: str, settings: Any
) -> None:
    session = _recorded(world)
    recordings = settings.STORAGES["recordings"]
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {**recordings, "OPTIONS": {**recordings["OPTIONS"], "endpoint_url": UNREACHABLE}},
    }
    page = _page(world, session)
    assert 'data-testid="recording-missing"' in page and "could not be read from storage" in page
    assert "removed" not in page
    assert LogbookEntry.objects.filter(action="recording.missing", actor=world.auditor).exists()
    assert not LogbookEntry.objects.filter(action="recording.removed").exists()
    code, said = _verify()
    assert code == 1 and "recordings check could not read" in said  # not checked, never "intact"


def test_the_chain_alone_leaves_the_recordings_out(world: World, bucket: str, aws: Cloud) -> None:
    session = _recorded(world)
    for key in _keys(session):
        _s3(aws).delete_object(Bucket=bucket, Key=key)
    code, said = _verify("--chain-only")
    assert code == 0 and "recordings checked" not in said


def test_the_daily_task_reports_a_removed_recording(world: World, bucket: str, aws: Cloud, mailoutbox: Any) -> None:
    from workers.tasks import verify_logbook

    session = _recorded(world)
    RecordingChunk.objects.filter(session=session).delete()
    assert verify_logbook() is False
    alert = LogbookEntry.objects.get(action="logbook.verification_failed")
    assert (
        alert.detail["kinds"] == ["recording-removed"] and f"terminal session {session.pk} " in alert.detail["summary"]
    )


def _repoint_chunk_2_at_chunk_1(session: TerminalSession) -> None:
    """The insider's one UPDATE: chunk 2's row now names chunk 1's object (its key, version and
    SHA-256). Every key is still under the sealed prefix and every row's object exists: chunk 2's
    bytes are simply no longer played."""
    rows = list(RecordingChunk.objects.filter(session=session).order_by("number"))
    assert len(rows) > 1
    RecordingChunk.objects.filter(pk=rows[1].pk).update(
        key=rows[0].key, version_id=rows[0].version_id, sha256=rows[0].sha256
    )


def test_a_manifest_row_repointed_at_another_chunk_is_found_by_verification(world: World, bucket: str) -> None:
    session = _recorded(world)
    _repoint_chunk_2_at_chunk_1(session)
    code, said = _verify()
    assert code == 11, said
    assert f"terminal session {session.pk} " in said and "chunk(s) 2 name another object than their own" in said
    page = _page(world, session)
    assert 'data-testid="recording-warning"' in page and "does not match the SHA-256 the Logbook recorded" in page


def test_a_repointed_row_in_a_session_row_reopened_is_still_found_on_the_page_and_by_verification(
    world: World, bucket: str
) -> None:
    session = _recorded(world)
    _repoint_chunk_2_at_chunk_1(session)
    # ...and the session row says the terminal is still open, so the player would check nothing.
    TerminalSession.objects.filter(pk=session.pk).update(ended_at=None)
    code, said = _verify()
    assert code == 11, said
    page = _page(world, session)
    assert 'role="alert"' in page and 'data-testid="recording-open"' not in page
    assert "does not match the SHA-256 the Logbook recorded" in page and "still open" in page
    viewed = LogbookEntry.objects.get(action="recording.viewed", actor=world.auditor)
    assert viewed.detail["sha256_ok"] is False
