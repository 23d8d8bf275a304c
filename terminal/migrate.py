"""One recording made before chunks, moved into the recordings storage (``manage.py migrate_recordings``)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from django.conf import settings
from django.db import transaction

from requests_app.services.grant_log import grant_logbook_append
from terminal.chunks import Chunk
from terminal.models import TerminalSession
from terminal.recorder import chunk_store_for, recording_kept
from terminal.storage import recording_prefix_new


class MigrationProblem(Exception):
    pass


def _chunks_of(data: bytes, max_bytes: int) -> list[bytes]:
    """Split at line ends, about ``max_bytes`` each, so every prefix of chunks still plays."""
    parts: list[bytes] = []
    start = 0
    while start < len(data):
        end = data.find(b"\n", min(start + max_bytes, len(data)) - 1)
        end = len(data) if end < 0 else end + 1
        parts.append(data[start:end])
        start = end
    return parts


def recording_migrate(*, session: TerminalSession, source: Path, dry_run: bool = False) -> str:
    """Copy one legacy recording into chunks; returns its new prefix. Raises MigrationProblem."""
    path = (source / session.recording_path).resolve()
    if source.resolve() not in path.parents:
        raise MigrationProblem(f"{session.recording_path} is outside {source}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MigrationProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if not session.recording_sha256 or not hmac.compare_digest(digest, session.recording_sha256):
        raise MigrationProblem(f"{path} does not match the SHA-256 it was sealed with; left as it is")
    if dry_run:
        return "(dry run)"
    prefix = recording_prefix_new()
    store = chunk_store_for(session_id=session.pk, prefix=prefix, sealed=True)
    parts = _chunks_of(data, settings.PASSPORT_RECORDING_CHUNK_BYTES)
    with transaction.atomic():
        for number, part in enumerate(parts, start=1):
            store(Chunk(number, part, hashlib.sha256(part).hexdigest(), 0.0), False)
        old_path = session.recording_path
        session.recording_path = prefix
        session.save(update_fields=["recording_path"])
        kept = recording_kept(session, transcript=False)
        if kept.problem or kept.sha256 != digest:
            raise MigrationProblem(f"the copy read back does not match ({kept.problem or 'digest differs'})")
        # The chunk count, as terminal.ended records it for a recording made in chunks: the
        # recordings pass of verify_logbook counts the manifest against it (terminal.recordings_check),
        # so rows removed from the end of the copy are found too.
        grant_logbook_append(
            session.grant,
            "recording.migrated",
            {
                "terminal_session": session.pk,
                "from": old_path,
                "to": prefix,
                "recording_sha256": digest,
                "recording_chunks": len(parts),
            },
        )
    return prefix
