"""A recording's chunks in the recordings storage: storing them as the terminal runs (the
``store`` of terminal.chunks), its heartbeat, and reading back what was kept, from any web
process.

What was kept is the chunks in order, each checked against the SHA-256 in its manifest row,
up to the first one missing or changed: always a playable asciicast prefix. A recording made
before chunks is one object at ``recording_path`` (until ``manage.py migrate_recordings``).

Where it stops says why: a chunk storage says does not exist, or a sealed recording whose
manifest rows are gone, was *removed* (someone deleted it: storage does not lose one object of a
bucket); a chunk storage failed to give back (a timeout, a 5xx) could not be *read*.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from botocore.exceptions import ClientError
from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, F, Value, When
from django.utils import timezone

from terminal.chunks import Chunk
from terminal.models import RecordingChunk, TerminalSession
from terminal.storage import ObjectGone, chunk_key, object_get, object_put, recording_path_is_chunked
from terminal.transcript import Transcript, transcript_from_bytes


class RecordingSealed(Exception):
    """The session was sealed (its digest is in the Logbook): no chunk is added to its manifest."""


def chunk_store_for(*, session_id: int, prefix: str, sealed: bool = False) -> Callable[[Chunk, bool], None]:
    """Store one chunk: its object first, then its manifest row (so a row always has an object).

    A session already sealed takes no more rows (RecordingSealed): the sweep may have sealed a
    terminal whose process was only slow, and a row after the seal would not be covered by the
    digest the Logbook holds. The row lock is the one sealing takes (terminal_session_end), so a
    row is in before the seal counts or refused after it. ``sealed=True``: a sealed recording moved
    into chunks as it is (manage.py migrate_recordings, checked against its digest)."""

    def store(chunk: Chunk, retry: bool) -> None:
        key = chunk_key(prefix, chunk.number)
        object_put(key, chunk.data, replace=retry)
        with transaction.atomic():
            open_session = TerminalSession.objects.filter(pk=session_id, ended_at__isnull=True)
            if not open_session.select_for_update().exists() and not sealed:
                raise RecordingSealed(f"terminal session {session_id} is sealed: chunk {chunk.number} not added")
            RecordingChunk.objects.update_or_create(
                session_id=session_id,
                number=chunk.number,
                defaults={"key": key, "sha256": chunk.sha256, "size": len(chunk.data), "seconds": chunk.seconds},
            )
            open_session.update(heartbeat_at=timezone.now())

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
    # True when storage failed to give back a chunk (or the legacy file) the manifest names: an
    # error of the storage (or a legacy file not in it), not an answer about the recording.
    missing: bool = False
    # True when part of a sealed recording was removed: storage says a chunk the manifest lists
    # does not exist, or manifest rows the recording was sealed with are gone from the database.
    removed: bool = False
    transcript: Transcript = field(default_factory=Transcript)


def _chunk_rows(session: TerminalSession) -> list[RecordingChunk]:
    return list(RecordingChunk.objects.filter(session_id=session.pk).order_by("number"))


def recording_kept(
    session: TerminalSession, *, sealed_sha256: str = "", sealed_chunks: int | None = None
) -> KeptRecording:
    """Read back everything kept of a recording, checked chunk by chunk against its manifest.

    ``sealed_sha256`` and ``sealed_chunks`` are what the Logbook's ``terminal.ended`` entry says
    was sealed (the row's own digest counts too): manifest rows fewer than that were removed, and
    rows after the ``sealed_chunks`` first are none of what was sealed (a chunk storage failed to
    give back when it was sealed, and those after it), so not read. None: not known (read them all)."""
    rows = _chunk_rows(session)
    if sealed_chunks is not None and recording_path_is_chunked(session.recording_path):
        rows = rows[:sealed_chunks]
        if not rows and not sealed_chunks:
            return KeptRecording(problem="none of it was sealed")
    if not rows:
        if not recording_path_is_chunked(session.recording_path):
            return _legacy_kept(session)
        if session.recording_sha256 or sealed_sha256 or sealed_chunks:
            return KeptRecording(
                problem="its manifest (the list of its chunks, in the database) was removed, though a recording "
                "was sealed",
                removed=True,
            )
        return KeptRecording(problem="nothing was kept")
    parts: list[bytes] = []
    digest = hashlib.sha256()
    kept = KeptRecording()
    for expected, row in enumerate(rows, start=1):
        if row.number != expected:
            kept.problem = f"chunk {expected} was removed from the manifest"
            kept.removed = True
            break
        try:
            data = object_get(row.key)
        except ObjectGone:
            kept.problem = f"chunk {row.number} was removed from storage (it says there is no such object)"
            kept.removed = True
            break
        except Exception as exc:
            kept.problem = f"chunk {row.number} could not be read from storage ({_error_name(exc)})"
            kept.missing = True
            break
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), row.sha256):
            kept.problem = f"chunk {row.number} does not match the SHA-256 in its manifest"
            break
        parts.append(data)
        digest.update(data)
        kept.chunks += 1
        kept.seconds = row.seconds
    else:
        if sealed_chunks and sealed_chunks > len(rows):
            gone = (
                f"chunk {sealed_chunks} was"
                if sealed_chunks == len(rows) + 1
                else f"chunks {len(rows) + 1} to {sealed_chunks} were"
            )
            kept.problem = f"{gone} removed from the manifest"
            kept.removed = True
    kept.data = b"".join(parts)
    kept.sha256 = digest.hexdigest() if kept.chunks else ""
    kept.transcript = transcript_from_bytes(kept.data)
    return kept


def _error_name(exc: Exception) -> str:
    """What kind of failure, for the page and the Logbook: never the error's text (endpoints, bucket names)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{str(error.get('Code') or 'error')[:64]}, HTTP {status}" if isinstance(status, int) else "error"
    return type(exc).__name__


def _legacy_kept(session: TerminalSession) -> KeptRecording:
    if not session.recording_path:
        return KeptRecording(problem="nothing was recorded")
    try:
        data = object_get(session.recording_path)
    except ObjectGone:
        # Made before chunks: it may still be on the disk of the web host that made it, if
        # manage.py migrate_recordings never moved it. Not called removed.
        return KeptRecording(
            problem="the recording file, made before chunks, is missing from storage (it may still be on the "
            "disk of the web host that made it)",
            missing=True,
        )
    except Exception as exc:
        return KeptRecording(
            problem=f"the recording file could not be read from storage ({_error_name(exc)})", missing=True
        )
    return KeptRecording(
        data=data, sha256=hashlib.sha256(data).hexdigest(), chunks=1, transcript=transcript_from_bytes(data)
    )
