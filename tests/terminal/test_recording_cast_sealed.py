"""The cast download serves only the recording the Logbook sealed: what it reads is hashed and
compared with the sealed digest before the first byte is sent, and a recording that does not match
is refused (409), on record as recording.viewed with sha256_ok false and served false; so is one
whose sealing entry was edited (its keyed hash does not hold: it vouches for nothing). A chunk
overwritten in the bucket (a new current version, which Object Lock allows) is still read as it was
stored: the manifest keeps each chunk's S3 VersionId."""

from __future__ import annotations

import hashlib
import json
from io import StringIO
from typing import Any

import boto3
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from audit.models import LogbookEntry
from terminal import selectors
from terminal.models import RecordingChunk, TerminalSession
from terminal.sealing import EDITED_SEAL
from tests.audit.conftest import raw_sql
from tests.conftest import World
from tests.stack import Cloud
from tests.terminal.test_recording_storage import _recorded
from tests.terminal.test_recording_tamper import _repoint_chunk_2_at_chunk_1, bucket  # noqa: F401

pytestmark = pytest.mark.usefixtures("live_db")


def _sealed(session: TerminalSession) -> str:
    entry = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=session.pk)
    return str(entry.detail["recording_sha256"])


def _download(world: World, session: TerminalSession) -> tuple[int, bytes, str]:
    client = Client()
    client.force_login(world.auditor)
    response = client.get(reverse("terminal:recording-cast", args=[session.pk]))
    if response.streaming:
        return response.status_code, b"".join(response.streaming_content), response["Content-Type"]  # type: ignore[arg-type]
    return response.status_code, response.content, response["Content-Type"]


def _viewed(world: World) -> dict[str, Any]:
    entry = LogbookEntry.objects.filter(action="recording.viewed", actor=world.auditor).order_by("id").last()
    assert entry is not None
    return dict(entry.detail)


def test_the_cast_of_a_sealed_recording_is_served_and_logged_as_checked(world: World, bucket: str) -> None:  # noqa: F811
    session = _recorded(world)
    status, body, _ = _download(world, session)
    assert status == 200 and hashlib.sha256(body).hexdigest() == _sealed(session)
    viewed = _viewed(world)
    assert viewed["what"] == "cast" and viewed["sha256_ok"] is True and viewed["served"] is True


def test_the_cast_of_a_tampered_recording_is_refused_and_logged_as_refused(world: World, bucket: str) -> None:  # noqa: F811
    session = _recorded(world)
    _repoint_chunk_2_at_chunk_1(session)  # the insider's one UPDATE: every row still matches its object
    status, body, content_type = _download(world, session)
    assert status == 409, (status, len(body))
    assert content_type.startswith("text/plain") and b"does not match the SHA-256 the Logbook sealed" in body
    viewed = _viewed(world)
    assert viewed["what"] == "cast" and viewed["sha256_ok"] is False and viewed["served"] is False
    assert viewed["recording_sha256"] == _sealed(session) and viewed["file_sha256"] not in {"", _sealed(session)}


def test_a_chunk_overwritten_in_the_bucket_is_read_as_it_was_stored(
    world: World,
    bucket: str,  # noqa: F811
    aws: Cloud,
) -> None:
    session = _recorded(world)
    rows = list(RecordingChunk.objects.filter(session=session).order_by("number"))
    assert len(rows) > 1 and all(row.version_id for row in rows)
    # A new current version of chunk 2 (Object Lock keeps the old one, and allows this).
    s3 = boto3.client("s3", endpoint_url=aws.endpoint_url, region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key=rows[1].key, Body=b'[0.1, "o", "rm -rf / was never typed\\r\\n"]\n')
    status, body, _ = _download(world, session)
    assert status == 200 and hashlib.sha256(body).hexdigest() == _sealed(session)
    assert selectors.recording_check(session=session).ok


def test_chunks_stored_without_a_version_id_are_read_as_before(world: World, bucket: str) -> None:  # noqa: F811
    session = _recorded(world)
    RecordingChunk.objects.filter(session=session).update(version_id="")  # rows from before the column
    status, body, _ = _download(world, session)
    assert status == 200 and hashlib.sha256(body).hexdigest() == _sealed(session)


def test_an_edited_sealing_entry_vouches_for_nothing(world: World, bucket: str, aws: Cloud) -> None:  # noqa: F811
    """An insider with the database and the portal's S3 rights, not the Logbook key, changes a chunk
    (a new version), its manifest row, the session's digest and the one in its terminal.ended entry:
    everything agrees with everything, except the entry's keyed hash. The page calls it tampered and
    the cast is refused, on record as not checked; verify_logbook names the entry."""
    session = _recorded(world)
    rows = list(RecordingChunk.objects.filter(session=session).order_by("number"))
    forged = b'[0.1, "o", "nothing to see here\\r\\n"]\n'
    s3 = boto3.client("s3", endpoint_url=aws.endpoint_url, region_name="us-east-1")
    put = s3.put_object(Bucket=bucket, Key=rows[1].key, Body=forged)  # Object Lock allows a new version
    RecordingChunk.objects.filter(pk=rows[1].pk).update(
        version_id=put["VersionId"], sha256=hashlib.sha256(forged).hexdigest(), size=len(forged)
    )
    new_digest = selectors.recording_check(session=session).file_sha256
    assert new_digest and not selectors.recording_check(session=session).ok  # so far the change is seen
    TerminalSession.objects.filter(pk=session.pk).update(recording_sha256=new_digest)
    entry = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=session.pk)
    raw_sql(
        "UPDATE audit_logbookentry SET detail = %s::jsonb WHERE id = %s",
        [json.dumps({**entry.detail, "recording_sha256": new_digest}), entry.pk],
    )

    session.refresh_from_db()
    check = selectors.recording_check(session=session)
    assert not check.ok and check.problem == EDITED_SEAL
    client = Client()
    client.force_login(world.auditor)
    page = client.get(reverse("terminal:recording", args=[session.pk])).content.decode()
    assert "was edited after it was written" in page
    assert "recording-verified" not in page
    status, body, _ = _download(world, session)
    assert status == 409 and b"nothing to see here" not in body
    assert b"was edited after it was written" in body
    viewed = _viewed(world)
    assert (viewed["what"], viewed["sha256_ok"], viewed["served"]) == ("cast", False, False)

    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("verify_logbook", "--jobs", "1", "--chain-only", stdout=out, stderr=err)
    assert f"Entry #{entry.pk} was edited" in err.getvalue() and failure.value.returncode == 3
