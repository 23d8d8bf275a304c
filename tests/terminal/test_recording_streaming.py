"""Reading a recording back goes a chunk at a time, whatever the recording's size: sealing it
(its transcript), the page's digest check and the cast download. Nothing bounds how much a terminal
prints (``cat`` of a 1 GB log), and these run in the web process that serves the other terminals.

Storage is read one chunk per GET (each about CHUNK), the transcript keeps its cap
(TRANSCRIPT_MAX_CHARS, lowered here so the recording is many times over it), and the download
reads each chunk once into a spool (memory up to terminal.cast.SPOOL_MEMORY_BYTES, the rest a
temporary file) and sends nothing before the whole matches the digest the Logbook sealed. The memory
this keeps the web process to (tracemalloc's peak; before, a 24 MiB recording peaked at 99 MiB) is
measured by benchmarks/recording_read_memory.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from django.urls import reverse

from terminal import recorder, selectors, services, transcript
from terminal.chunks import ChunkSink
from terminal.models import RecordingChunk, TerminalSession
from terminal.recorder import chunk_store_for, upload_thread_exit
from terminal.recording import AsciicastWriter
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.usefixtures("live_db")

MiB = 2**20
SIZE = 24 * MiB
CHUNK = MiB
CAP = MiB  # characters each way kept for search (ASCII here: a byte each)
LINE = b"2026-01-01 12:00:00 INFO request served in 3 ms from cache, user=alice\r\n"


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcript, "TRANSCRIPT_MAX_CHARS", CAP)


@pytest.fixture
def large(world: World) -> TerminalSession:
    """A sealed recording of SIZE bytes, stored in chunks of about CHUNK."""
    session = services.terminal_session_start(
        user=world.requester, grant=make_active_grant(world), ssm_session_id="s-1", recording_path="recordings/big"
    )
    sink = ChunkSink(
        chunk_store_for(session_id=session.pk, prefix="recordings/big"),
        max_bytes=CHUNK,
        attempts=1,
        on_idle=upload_thread_exit,
    )
    writer = AsciicastWriter(sink, cols=80, rows=24, title="t")
    block = LINE * (64 * 1024 // len(LINE))
    for _ in range(SIZE // len(block)):
        writer.output(block)
    writer.input(b"tail -f /var/log/app.log\r")
    digest = writer.close()
    kept = sink.kept()
    return services.terminal_session_end(
        session=session, reason="The shell ended.", bytes_in=1, bytes_out=SIZE, recording_sha256=digest,
        recorded_seconds=kept.seconds, recording_chunks=kept.chunks, transcript=transcript.Transcript(),
    )  # fmt: skip


def _chunks(session: TerminalSession) -> int:
    return RecordingChunk.objects.filter(session_id=session.pk).count()


class Reads:
    """Every GET of a chunk from storage, in order with what the reader was given meanwhile."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.events: list[str] = []

    def given(self) -> None:
        self.events.append("given")

    def most_read_ahead(self) -> int:
        """The most chunks read from storage beyond those already given to the reader."""
        ahead = worst = 0
        for event in self.events:
            ahead += 1 if event == "read" else -1
            worst = max(worst, ahead)
        return worst


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Storage's own reads, passed through unchanged and noted (a spy: nothing is replaced)."""
    seen = Reads()
    real = recorder.object_get

    def noted(key: str, version_id: str = "") -> bytes:
        data = real(key, version_id)
        seen.sizes.append(len(data))
        seen.events.append("read")
        return data

    monkeypatch.setattr(recorder, "object_get", noted)
    return seen


def test_sealing_a_large_recording_reads_a_chunk_at_a_time_and_keeps_the_transcript_cap(
    large: TerminalSession, reads: Reads
) -> None:
    made = services.recording_transcript(session=large)
    assert reads.sizes and max(reads.sizes) < 1.5 * CHUNK
    assert len(reads.sizes) == _chunks(large) > 16  # each chunk once, one GET each (what was typed is last)
    assert CAP // 2 < len(made.output) <= CAP
    assert made.output.startswith(LINE.decode().replace("\r", "")) and "tail -f" in made.input


def test_the_page_check_of_a_large_recording_reads_a_chunk_at_a_time(large: TerminalSession, reads: Reads) -> None:
    check = selectors.recording_check(session=large)
    assert check.ok and check.file_sha256 == large.recording_sha256
    assert len(reads.sizes) == _chunks(large) > 16  # each chunk once, one GET each
    assert max(reads.sizes) < 1.5 * CHUNK


def test_the_cast_download_of_a_large_recording_is_streamed_a_chunk_at_a_time(
    world: World, large: TerminalSession, reads: Reads
) -> None:
    client = Client()
    client.force_login(world.auditor)
    response = client.get(reverse("terminal:recording-cast", args=[large.pk]))
    assert response.status_code == 200 and response.streaming
    digest, size, parts = hashlib.sha256(), 0, []
    body: Iterator[bytes] = response.streaming_content  # type: ignore[assignment]
    for part in body:
        reads.given()
        digest.update(part)
        size += len(part)
        parts.append(len(part))
    assert digest.hexdigest() == large.recording_sha256 and size > SIZE
    assert len(reads.sizes) == _chunks(large) and max(parts) < 1.5 * CHUNK
    # Every chunk read (once) and the whole checked against the sealed digest before the first byte
    # is sent (terminal.cast): spooled to a temporary file past SPOOL_MEMORY_BYTES, never held whole.
    assert reads.most_read_ahead() == _chunks(large), reads.events[:8]


def test_served_by_an_asgi_server_the_cast_download_is_streamed_too(
    world: World, large: TerminalSession, reads: Reads
) -> None:
    """daphne serves the portal: Django reads a synchronous streaming body whole before sending it there."""

    async def download() -> tuple[str, int, list[int]]:
        client = AsyncClient()
        await client.aforce_login(world.auditor)
        response = await client.get(reverse("terminal:recording-cast", args=[large.pk]))
        assert response.status_code == 200 and response.streaming and response.is_async
        digest, size, parts = hashlib.sha256(), 0, []
        async for part in response.streaming_content:  # type: ignore[union-attr]
            reads.given()
            digest.update(part)
            size += len(part)
            parts.append(len(part))
        return digest.hexdigest(), size, parts

    digest, size, parts = async_to_sync(download)()
    assert digest == large.recording_sha256 and size > SIZE
    assert len(reads.sizes) == _chunks(large) and max(parts) < 1.5 * CHUNK
    assert reads.most_read_ahead() == _chunks(large), reads.events[:8]
