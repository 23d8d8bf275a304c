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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from botocore.exceptions import ClientError
from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, F, Value, When
from django.utils import timezone

from terminal.chunks import Chunk
from terminal.models import RecordingChunk, TerminalSession
from terminal.storage import (
    ObjectGone,
    StorageUnavailable,
    chunk_key,
    object_blocks,
    object_get,
    object_names,
    object_put,
    recording_path_is_chunked,
)
from terminal.transcript import Transcript, TranscriptFeed


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
        version_id = object_put(key, chunk.data, replace=retry)
        with transaction.atomic():
            open_session = TerminalSession.objects.filter(pk=session_id, ended_at__isnull=True)
            if not open_session.select_for_update().exists() and not sealed:
                raise RecordingSealed(f"terminal session {session_id} is sealed: chunk {chunk.number} not added")
            RecordingChunk.objects.update_or_create(
                session_id=session_id,
                number=chunk.number,
                defaults={
                    "key": key,
                    "version_id": version_id,
                    "sha256": chunk.sha256,
                    "size": len(chunk.data),
                    "seconds": chunk.seconds,
                },
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


def recording_read(
    session: TerminalSession, *, sealed_sha256: str = "", sealed_chunks: int | None = None
) -> tuple[KeptRecording, Iterator[bytes]]:
    """What is kept of a recording, a chunk at a time: its chunks' bytes in order, each checked
    against its manifest row before it is given, up to the first missing or changed one (a
    recording is never held whole: nothing bounds how much a terminal prints). The KeptRecording
    is filled in as they are read, and whole once the iterator is.

    ``sealed_sha256`` and ``sealed_chunks`` are what the Logbook's ``terminal.ended`` entry says
    was sealed (the row's own digest counts too): manifest rows fewer than that were removed, and
    rows after the ``sealed_chunks`` first are none of what was sealed (a chunk storage failed to
    give back when it was sealed, and those after it), so not read. None: not known (read them all)."""
    kept = KeptRecording()
    return kept, _chunks_read(session, kept, sealed_sha256=sealed_sha256, sealed_chunks=sealed_chunks)


def _chunks_read(
    session: TerminalSession, kept: KeptRecording, *, sealed_sha256: str, sealed_chunks: int | None
) -> Iterator[bytes]:
    rows = _chunk_rows(session)
    if sealed_chunks is not None and recording_path_is_chunked(session.recording_path):
        rows = rows[:sealed_chunks]
        if not rows and not sealed_chunks:
            kept.problem = "none of it was sealed"
            return
    if not rows:
        if not recording_path_is_chunked(session.recording_path):
            yield from _legacy_read(session, kept)
        elif session.recording_sha256 or sealed_sha256 or sealed_chunks:
            kept.problem = (
                "its manifest (the list of its chunks, in the database) was removed, though a recording was sealed"
            )
            kept.removed = True
        else:
            kept.problem = "nothing was kept"
        return
    try:
        present = _keys_present(rows)
    except StorageUnavailable as exc:
        kept.problem = f"its chunks could not be listed in storage ({_error_name(exc)})"
        kept.missing = True
        return
    digest = hashlib.sha256()
    for expected, row in enumerate(rows, start=1):
        if row.number != expected:
            kept.problem = f"chunk {expected} was removed from the manifest"
            kept.removed = True
            break
        try:
            if present is not None and row.key not in present:
                raise ObjectGone(row.key)
            # The version stored (a new one put over its key later is none of it); rows from before
            # the VersionId was kept are read by key.
            data = object_get(row.key, row.version_id)
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
        # The digest of the chunks joined, advanced a chunk at a time: the same as hashing them joined.
        digest.update(data)
        kept.chunks += 1
        kept.seconds = row.seconds
        kept.sha256 = digest.hexdigest()
        yield data
        del data  # not held while the next one is read
    else:
        if sealed_chunks and sealed_chunks > len(rows):
            gone = (
                f"chunk {sealed_chunks} was"
                if sealed_chunks == len(rows) + 1
                else f"chunks {len(rows) + 1} to {sealed_chunks} were"
            )
            kept.problem = f"{gone} removed from the manifest"
            kept.removed = True


def _keys_present(rows: list[RecordingChunk]) -> set[str] | None:
    """The keys of the chunks read by VersionId that storage still shows (one LIST per 1,000 chunks):
    a version is read even behind a delete marker, and a chunk someone deleted is still *removed*.
    None when no row has a VersionId (read by key: storage itself says whether it is there)."""
    prefixes = {row.key.rsplit("/", 1)[0] for row in rows if row.version_id}
    if not prefixes:
        return None
    return set().union(*(object_names(prefix) for prefix in sorted(prefixes)))


def recording_kept(
    session: TerminalSession, *, sealed_sha256: str = "", sealed_chunks: int | None = None, transcript: bool = True
) -> KeptRecording:
    """Read back everything kept of a recording (``recording_read``), a chunk at a time: what it is,
    its digest and (``transcript``) its transcript, without its bytes."""
    kept, chunks = recording_read(session, sealed_sha256=sealed_sha256, sealed_chunks=sealed_chunks)
    feed = TranscriptFeed() if transcript else None
    for data in chunks:
        if feed is not None:
            feed.feed(data)
        del data
    if feed is not None and kept.chunks:
        kept.transcript = feed.result()
    return kept


def recording_transcript_read(session: TerminalSession, *, chunks: int | None = None) -> Transcript:
    """The transcript of what is kept of a recording (of its first ``chunks`` chunks), read a chunk
    at a time and no further than the transcript keeps (TRANSCRIPT_MAX_CHARS each way)."""
    feed = TranscriptFeed()
    _, stream = recording_read(session, sealed_chunks=chunks)
    for data in stream:
        feed.feed(data)
        del data
        if feed.builder.full:
            break
    return feed.result()


def _error_name(exc: Exception) -> str:
    """What kind of failure, for the page and the Logbook: never the error's text (endpoints, bucket names)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{str(error.get('Code') or 'error')[:64]}, HTTP {status}" if isinstance(status, int) else "error"
    return type(exc).__name__


def _legacy_read(session: TerminalSession, kept: KeptRecording) -> Iterator[bytes]:
    """A recording made before chunks: one object, read a block at a time; kept as one chunk once read whole."""
    if not session.recording_path:
        kept.problem = "nothing was recorded"
        return
    digest = hashlib.sha256()
    try:
        for block in object_blocks(session.recording_path):
            digest.update(block)
            yield block
            del block
    except ObjectGone:
        # Made before chunks: it may still be on the disk of the web host that made it, if
        # manage.py migrate_recordings never moved it. Not called removed.
        kept.problem = (
            "the recording file, made before chunks, is missing from storage (it may still be on the "
            "disk of the web host that made it)"
        )
        kept.missing = True
        return
    except Exception as exc:
        kept.problem = f"the recording file could not be read from storage ({_error_name(exc)})"
        kept.missing = True
        return
    kept.sha256, kept.chunks = digest.hexdigest(), 1
