"""Reading a recording back holds one chunk at a time, whatever the recording's size: sealing it
(its transcript), the page's digest check and the cast download. Nothing bounds how much a terminal
prints (``cat`` of a 1 GB log), and these run in the web process that serves the other terminals.

Each bound is on tracemalloc's peak: a couple of chunks, plus the transcript's own cap where a
transcript is made (TRANSCRIPT_MAX_CHARS, lowered here so the recording is many times over it).
Before, each held the whole recording several times over (a 24 MiB recording peaked at 99 MiB).
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from django.urls import reverse

from terminal import selectors, services, transcript
from terminal.chunks import ChunkSink
from terminal.models import TerminalSession
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


def _peak(work: Callable[[], Any]) -> tuple[int, Any]:
    """The peak of ``work``'s second run: the first fills what the process keeps once (imports, caches)."""
    work()
    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


def test_sealing_a_large_recording_holds_a_chunk_at_a_time_and_the_transcript_cap(large: TerminalSession) -> None:
    peak, made = _peak(lambda: services.recording_transcript(session=large))
    assert peak < 1.5 * CHUNK + 2 * CAP, (
        f"the transcript of a {SIZE // MiB} MiB recording peaked at {peak / MiB:.1f} MiB"
    )
    assert CAP // 2 < len(made.output) <= CAP
    assert made.output.startswith(LINE.decode().replace("\r", "")) and "tail -f" in made.input


def test_the_page_check_of_a_large_recording_holds_a_chunk_at_a_time(large: TerminalSession) -> None:
    peak, check = _peak(lambda: selectors.recording_check(session=large))
    assert peak < 1.5 * CHUNK, f"checking a {SIZE // MiB} MiB recording peaked at {peak / MiB:.1f} MiB"
    assert check.ok and check.file_sha256 == large.recording_sha256


def test_the_cast_download_of_a_large_recording_is_streamed_a_chunk_at_a_time(
    world: World, large: TerminalSession
) -> None:
    client = Client()
    client.force_login(world.auditor)

    def download() -> tuple[str, int]:
        response = client.get(reverse("terminal:recording-cast", args=[large.pk]))
        assert response.status_code == 200 and response.streaming
        digest, size = hashlib.sha256(), 0
        body: Iterator[bytes] = response.streaming_content  # type: ignore[assignment]
        for part in body:
            digest.update(part)
            size += len(part)
        return digest.hexdigest(), size

    peak, (digest, size) = _peak(download)
    # The server holds the part it is sending while the next is read.
    assert peak < 2.5 * CHUNK, f"downloading a {SIZE // MiB} MiB recording peaked at {peak / MiB:.1f} MiB"
    assert digest == large.recording_sha256 and size > SIZE


def test_served_by_an_asgi_server_the_cast_download_is_streamed_too(world: World, large: TerminalSession) -> None:
    """daphne serves the portal: Django reads a synchronous streaming body whole before sending it there."""

    async def download() -> tuple[str, int]:
        client = AsyncClient()
        await client.aforce_login(world.auditor)
        response = await client.get(reverse("terminal:recording-cast", args=[large.pk]))
        assert response.status_code == 200 and response.streaming and response.is_async
        digest, size = hashlib.sha256(), 0
        async for part in response.streaming_content:  # type: ignore[union-attr]
            digest.update(part)
            size += len(part)
        return digest.hexdigest(), size

    peak, (digest, size) = _peak(async_to_sync(download))
    assert peak < 2.5 * CHUNK, f"downloading a {SIZE // MiB} MiB recording peaked at {peak / MiB:.1f} MiB"
    assert digest == large.recording_sha256 and size > SIZE
