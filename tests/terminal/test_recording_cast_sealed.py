"""The cast download serves only the recording the Logbook sealed: what it reads is hashed and
compared with the sealed digest before the first byte is sent, and a recording that does not match
is refused (409), on record as recording.viewed with sha256_ok false and served false. A chunk
overwritten in the bucket (a new current version, which Object Lock allows) is still read as it was
stored: the manifest keeps each chunk's S3 VersionId."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
import pytest
from django.test import Client
from django.urls import reverse

from audit.models import LogbookEntry
from terminal import selectors
from terminal.models import RecordingChunk, TerminalSession
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
