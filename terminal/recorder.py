"""A recording's chunks in the recordings storage: storing them as the terminal runs (the
``store`` of terminal.chunks), its heartbeat, and reading back what was kept, from any web
process.

What was kept is the chunks in order, each checked against the SHA-256 in its manifest row,
up to the first one missing or changed: always a playable asciicast prefix. A recording made
before chunks is one object at ``recording_path`` (until ``manage.py migrate_recordings``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import BigIntegerField, Case, F, Value, When
from django.utils import timezone

from terminal.chunks import Chunk
from terminal.models import RecordingChunk, TerminalSession
from terminal.storage import chunk_key, object_get, object_put
from terminal.transcript import Transcript, transcript_from_bytes


def chunk_store_for(*, session_id: int, prefix: str) -> Callable[[Chunk, bool], None]:
    """Store one chunk: its object first, then its manifest row (so a row always has an object)."""

    def store(chunk: Chunk, retry: bool) -> None:
        key = chunk_key(prefix, chunk.number)
        object_put(key, chunk.data, replace=retry)
        RecordingChunk.objects.update_or_create(
            session_id=session_id,
            number=chunk.number,
            defaults={"key": key, "sha256": chunk.sha256, "size": len(chunk.data), "seconds": chunk.seconds},
        )
        TerminalSession.objects.filter(pk=session_id, ended_at__isnull=True).update(heartbeat_at=timezone.now())

    return store


def upload_thread_exit() -> None:
    """The upload thread's own database connection goes with it."""
    connection.close()


class Heartbeat(NamedTuple):
    """One open session's heartbeat, with its byte counts so far when it is recorded."""

    session_id: int
    bytes_in: int | None = None
    bytes_out: int | None = None


def terminal_heartbeats(*, beats: Sequence[Heartbeat]) -> None:
    """The web process serving these terminals is alive (terminal.sweeps reads it); with each one's
    byte counts so far, for Live now (sealing the session writes the final ones). One UPDATE for
    them all, each row its own counts."""
    if not beats:
        return
    counted = [beat for beat in beats if beat.bytes_in is not None and beat.bytes_out is not None]
    counts: dict[str, Any] = {}
    if counted:
        counts = {
            name: Case(
                *(When(pk=beat.session_id, then=Value(getattr(beat, name))) for beat in counted),
                default=F(name),
                output_field=BigIntegerField(),
            )
            for name in ("bytes_in", "bytes_out")
        }
    TerminalSession.objects.filter(pk__in={beat.session_id for beat in beats}, ended_at__isnull=True).update(
        heartbeat_at=timezone.now(), **counts
    )


@dataclass
class KeptRecording:
    data: bytes = b""
    sha256: str = ""
    chunks: int = 0
    seconds: float = 0.0
    # Why what was kept stops short of the manifest ("" if every chunk was there and intact).
    problem: str = ""
    # True when storage could not give back a chunk (or the legacy file) the manifest names:
    # lost or unreadable there, which says nothing about whether it was changed.
    missing: bool = False
    transcript: Transcript = field(default_factory=Transcript)


def _chunk_rows(session: TerminalSession) -> list[RecordingChunk]:
    return list(RecordingChunk.objects.filter(session_id=session.pk).order_by("number"))


def recording_is_chunked(session: TerminalSession) -> bool:
    return RecordingChunk.objects.filter(session_id=session.pk).exists()


def recording_kept(session: TerminalSession) -> KeptRecording:
    """Read back everything kept of a recording, checked chunk by chunk against its manifest."""
    rows = _chunk_rows(session)
    if not rows:
        return _legacy_kept(session)
    parts: list[bytes] = []
    digest = hashlib.sha256()
    kept = KeptRecording()
    for expected, row in enumerate(rows, start=1):
        if row.number != expected:
            kept.problem = f"chunk {expected} is missing from the manifest"
            break
        try:
            data = object_get(row.key)
        except Exception:
            kept.problem = f"chunk {row.number} is missing from storage"
            kept.missing = True
            break
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), row.sha256):
            kept.problem = f"chunk {row.number} does not match the SHA-256 in its manifest"
            break
        parts.append(data)
        digest.update(data)
        kept.chunks += 1
        kept.seconds = row.seconds
    kept.data = b"".join(parts)
    kept.sha256 = digest.hexdigest() if kept.chunks else ""
    kept.transcript = transcript_from_bytes(kept.data)
    return kept


def _legacy_kept(session: TerminalSession) -> KeptRecording:
    if not session.recording_path:
        return KeptRecording(problem="nothing was recorded")
    try:
        data = object_get(session.recording_path)
    except Exception:
        return KeptRecording(problem="the recording file is missing from storage", missing=True)
    return KeptRecording(
        data=data, sha256=hashlib.sha256(data).hexdigest(), chunks=1, transcript=transcript_from_bytes(data)
    )
