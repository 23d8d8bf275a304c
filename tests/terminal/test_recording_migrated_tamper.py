"""A recording moved into chunks by ``migrate_recordings`` is checked by verify_logbook's recordings
pass as one sealed in chunks is: its ``recording.migrated`` entry records how many chunks the copy
has, so manifest rows removed from its end are found (exit 11), not only rows from the middle.
An older ``recording.migrated`` entry, written before it recorded a count, is checked as before."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import LogbookEntry
from requests_app.services.grant_log import grant_logbook_append
from terminal import services
from terminal.chunks import Chunk
from terminal.migrate import _chunks_of
from terminal.models import RecordingChunk, TerminalSession
from terminal.recorder import chunk_store_for
from terminal.recording import AsciicastWriter
from terminal.storage import recording_prefix_new
from tests.conftest import World
from tests.stack import Cloud
from tests.terminal.storage_helpers import use_s3_recordings
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.usefixtures("live_db")

CHUNK_BYTES = 500


@pytest.fixture
def bucket(aws: Cloud, settings: Any, tmp_path: Path) -> str:
    settings.MEDIA_ROOT = tmp_path / "media-of-web-1"
    return use_s3_recordings(settings, aws.endpoint_url)


def _verify() -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_logbook", "--jobs", "1", stdout=out, stderr=err)
    except CommandError as failure:
        return failure.returncode, out.getvalue() + err.getvalue() + str(failure)
    return 0, out.getvalue() + err.getvalue()


def _old_recording(world: World, media: Path) -> TerminalSession:
    """A recording as the portal made them before chunks: one .cast file, sealed by terminal.ended."""
    grant = make_active_grant(world)
    relative = services.recording_relative_path(grant=grant)
    writer = AsciicastWriter(media / relative, cols=80, rows=24, title="old")
    session = services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id="s-old", recording_path=relative
    )
    for number in range(60):
        # Hostile bytes in the recording itself: quotes, a newline's neighbours, bidi, shell characters.
        writer.output(f"old line {number} '\"$(rm -rf /)`;|&\u202e\x1b[31m\r\n".encode())
    return services.terminal_session_end(
        session=session, reason="The shell ended.", bytes_in=0, bytes_out=1, recording_sha256=writer.close()
    )


def _rows(session: TerminalSession) -> list[RecordingChunk]:
    return list(RecordingChunk.objects.filter(session_id=session.pk).order_by("number"))


def test_manifest_rows_removed_from_the_end_of_a_migrated_recording_are_found(
    world: World, bucket: str, settings: Any
) -> None:
    media = Path(settings.MEDIA_ROOT)
    session = _old_recording(world, media)
    settings.PASSPORT_RECORDING_CHUNK_BYTES = CHUNK_BYTES
    call_command("migrate_recordings", "--from", str(media), stdout=io.StringIO(), stderr=io.StringIO())
    rows = _rows(session)
    assert len(rows) > 2
    entry = LogbookEntry.objects.get(action="recording.migrated", detail__terminal_session=session.pk)
    assert entry.detail["recording_chunks"] == len(rows)
    assert _verify()[0] == 0

    # The last two manifest rows deleted (a plain table; the chunks stay in the bucket, unnamed):
    # what is left still plays, so only the count the Logbook holds tells.
    RecordingChunk.objects.filter(pk__in=[rows[-1].pk, rows[-2].pk]).delete()
    code, said = _verify()
    assert code == 11, f"the end of a migrated recording's manifest removed, and verify_logbook says: {said}"
    assert f"terminal session {session.pk} " in said
    assert f"chunk(s) {len(rows) - 1}, {len(rows)} removed from the manifest" in said


def _migrated_as_before(session: TerminalSession, media: Path) -> list[RecordingChunk]:
    """What migrate_recordings did before its entry recorded the chunk count: the chunks stored,
    the session moved, and a recording.migrated entry naming only the prefix and the digest."""
    data = (media / session.recording_path).read_bytes()
    prefix = recording_prefix_new()
    store = chunk_store_for(session_id=session.pk, prefix=prefix, sealed=True)
    for number, part in enumerate(_chunks_of(data, CHUNK_BYTES), start=1):
        store(Chunk(number, part, hashlib.sha256(part).hexdigest(), 0.0), False)
    old_path = session.recording_path
    TerminalSession.objects.filter(pk=session.pk).update(recording_path=prefix)
    grant_logbook_append(
        session.grant,
        "recording.migrated",
        {"terminal_session": session.pk, "from": old_path, "to": prefix, "recording_sha256": session.recording_sha256},
    )
    return _rows(session)


def test_an_older_migrated_entry_without_a_count_is_still_checked_as_before(
    world: World, bucket: str, settings: Any
) -> None:
    media = Path(settings.MEDIA_ROOT)
    session = _old_recording(world, media)
    rows = _migrated_as_before(session, media)
    assert len(rows) > 2
    assert _verify()[0] == 0

    # Without a count, rows are counted against the highest row left: one gone from the middle is found.
    RecordingChunk.objects.filter(pk=rows[1].pk).delete()
    code, said = _verify()
    assert code == 11, said
    assert f"terminal session {session.pk} " in said and "chunk(s) 2 removed from the manifest" in said
