#!/usr/bin/env python
"""The memory a web process needs to read a large recording back, against reading one of its chunks:
sealing it (its transcript), the recording page's digest check, and the cast download's body.

    .venv/bin/python benchmarks/recording_read_memory.py            # 24 MiB recording, 1 MiB chunks
    .venv/bin/python benchmarks/recording_read_memory.py --megabytes 64

Nothing bounds how much a terminal prints (``cat`` of a 1 GB log), and these run in the web process
that serves the other terminals, so each reads a chunk at a time (the tests check that it does:
tests/terminal/test_recording_streaming.py). This measures what that keeps the process to:
tracemalloc's peak for each, as a ratio to the peak of reading one chunk in the same run (the
transcript adds its own cap, TRANSCRIPT_MAX_CHARS each way). Before, a 24 MiB recording peaked at
99 MiB; the test suite then held the check under 1.5 chunks, the download under 2.5 chunks and the
transcript under 1.5 chunks plus twice its cap. Nothing here asserts anything.

Recordings are kept as local files in a temporary directory (no bucket). ``DATABASE_URL`` picks the
database (default postgres://postgres@127.0.0.1:5432/passport_bench_recording_read), created if
missing and migrated; each run adds its own rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from logbook_pagination import ensure_database  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/passport_bench_recording_read"
MiB = 2**20
LINE = b"2026-01-01 12:00:00 INFO request served in 3 ms from cache, user=alice\r\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=24, help="Size of the recording in MiB (24).")
    parser.add_argument("--chunk", type=int, default=1, help="Chunk size in MiB (1).")
    return parser.parse_args()


def setup_django(recordings: Path) -> None:
    url = os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "passport_portal.settings")
    os.environ.setdefault("PASSPORT_LOG_LEVEL", "WARNING")
    os.environ.setdefault("PASSPORT_DEBUG", "false")
    os.environ["PASSPORT_RECORDINGS_BUCKET"] = ""
    os.environ["PASSPORT_IAM_CHECK"] = "false"  # the request is made here without AWS: no IAM to ask
    os.environ["PASSPORT_RECORDINGS_DIR"] = str(recordings)
    ensure_database(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def large_recording(size: int, chunk: int) -> Any:
    """A sealed recording of ``size`` bytes of log lines, stored in chunks of about ``chunk``."""
    from django.utils import timezone

    from requests_app import services as request_services
    from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
    from terminal import services, transcript
    from terminal.chunks import ChunkSink
    from terminal.recorder import chunk_store_for, upload_thread_exit
    from terminal.recording import AsciicastWriter
    from tests.factories import make_account, make_instance, make_membership, make_user

    tag = uuid.uuid4().hex[:8]
    user = make_user(f"bench-{tag}")
    account = make_account(f"{uuid.uuid4().int % 10**12:012d}", f"Bench {tag}")
    make_membership(user, account, "admin")
    instance = make_instance(account, f"web-{tag}")
    access_request = request_services.access_request_create(
        requester=user, account=account, instances=[instance], reason="benchmark"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    grant = Grant.objects.select_related("request", "instance").get(request=access_request)
    prefix = f"recordings/bench-{tag}"
    session = services.terminal_session_start(user=user, grant=grant, ssm_session_id=f"s-{tag}", recording_path=prefix)
    sink = ChunkSink(
        chunk_store_for(session_id=session.pk, prefix=prefix), max_bytes=chunk, attempts=1, on_idle=upload_thread_exit
    )
    writer = AsciicastWriter(sink, cols=80, rows=24, title="bench")
    block = LINE * (64 * 1024 // len(LINE))
    for _ in range(size // len(block)):
        writer.output(block)
    writer.input(b"tail -f /var/log/app.log\r")
    digest = writer.close()
    kept = sink.kept()
    return services.terminal_session_end(
        session=session, reason="The shell ended.", bytes_in=1, bytes_out=size, recording_sha256=digest,
        recorded_seconds=kept.seconds, recording_chunks=kept.chunks, transcript=transcript.Transcript(),
    )  # fmt: skip


def peak(work: Callable[[], Any]) -> int:
    """tracemalloc's peak for ``work``'s second run: the first fills what the process keeps once."""
    work()
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as recordings:
        setup_django(Path(recordings))
        from terminal import recorder, selectors, services, transcript
        from terminal.cast import cast_read
        from terminal.models import RecordingChunk

        session = large_recording(args.megabytes * MiB, args.chunk * MiB)
        rows = list(RecordingChunk.objects.filter(session_id=session.pk).order_by("number"))

        def download() -> None:  # the body the cast view streams: spooled and checked, then a part at a time
            read = cast_read(session, sealed_sha256=session.recording_sha256, sealed_chunks=None)
            for part in read.body():
                del part

        one_chunk = peak(lambda: recorder.object_get(rows[1].key))
        figures = {
            "transcript (sealing)": peak(lambda: services.recording_transcript(session=session)),
            "digest check (page)": peak(lambda: selectors.recording_check(session=session)),
            "cast download body": peak(download),
        }
    print(
        f"recording of {args.megabytes} MiB in {len(rows)} chunks of about {args.chunk} MiB; "
        f"transcript cap {transcript.TRANSCRIPT_MAX_CHARS / MiB:.0f} Mi characters each way"
    )
    print(f"{'reading one chunk (baseline)':30} {one_chunk / MiB:7.1f} MiB")
    for name, value in figures.items():
        print(f"{name:30} {value / MiB:7.1f} MiB  {value / one_chunk:5.1f}x one chunk")


if __name__ == "__main__":
    main()
