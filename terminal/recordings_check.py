"""The recordings pass of the full Logbook verification (``verify_logbook``, the daily task):
every recording a ``terminal.ended`` entry sealed still has its manifest rows and its chunks.

What was sealed comes from the Logbook (the chain walk vouches for it), not from the session
rows an insider could edit: the entry's recording prefix (or where ``recording.migrated`` moved
it), its digest and, for entries written since it was added, how many chunks it covers (for a
migrated recording, how many chunks ``recording.migrated`` says the copy has, when it says). Per
session one LIST of its prefix (one per 1,000 chunks) and one query of its manifest; no byte of
a recording is read, so a changed chunk is left to the player's check (the sealed digest covers
the chunks' bytes joined, and no per-chunk digest is sealed), and a removed one is found here
without anyone opening it.

Each manifest row must name its own chunk, the key the recorder wrote it under
(``terminal.storage.chunk_key``): a row naming another chunk (with that chunk's SHA-256) is still
listed and still plays, and leaves its own chunk out. With that, rows 1..N name N distinct
objects; an object under the prefix that no row names is one whose row was never written (an
upload that failed after storing its object), not part of what was sealed. Recordings made
before chunks (one ``.cast`` file each) are not checked here: they may still be on the disk of
the host that made them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from audit.anchor.verification import EvidenceUncheckable
from audit.integrity import ChainProblem
from audit.selectors import logbook_entries_of
from terminal.models import RecordingChunk
from terminal.storage import StorageUnavailable, chunk_key, object_names

KIND = "recording-removed"
# Sessions listed at once (the listing waits on storage, not on this process).
LIST_THREADS = 8
# Sessions whose manifests and listings are held at once.
BATCH = 500
# A prefix the portal makes (terminal.storage.recording_prefix_new); anything else in an entry is
# no chunked recording (a legacy ``.cast`` file) and is never handed to the storage to list.
_PREFIX = re.compile(r"recordings/[A-Za-z0-9_-]{1,100}")


@dataclass
class Sealed:
    session_id: int
    entry_id: int
    prefix: str
    chunks: int  # what the entry (or the recording.migrated after it) says the digest covers; 0 when it does not say


def _count(value: object) -> int:
    """A chunk count as an entry records it; 0 when it records none (or no count: a bool is no int here)."""
    return value if type(value) is int and value > 0 else 0


def _sealed_recordings() -> dict[int, Sealed]:
    """Every chunked recording the Logbook sealed with a digest, by session id."""
    sealed: dict[int, Sealed] = {}
    moved: dict[int, tuple[str, int]] = {}
    for entry_id, action, detail in logbook_entries_of(actions=["terminal.ended", "recording.migrated"]):
        if not isinstance(detail, dict):
            continue
        session_id = detail.get("terminal_session")
        if type(session_id) is not int:
            continue
        chunks = _count(detail.get("recording_chunks"))
        if action == "recording.migrated":
            # Where migrate_recordings copied it, and into how many chunks. Entries written before
            # it recorded the count say nothing of it (0): for those the manifest is counted
            # against its own highest row, as before, so rows gone from its end are not found.
            target = detail.get("to")
            if isinstance(target, str) and _PREFIX.fullmatch(target):
                moved[session_id] = (target, chunks)
            continue
        path, digest = detail.get("recording"), detail.get("recording_sha256")
        if session_id in sealed or not isinstance(path, str) or not path or not isinstance(digest, str) or not digest:
            continue  # sealed once (a second entry is no recording); nothing recorded
        sealed[session_id] = Sealed(session_id, entry_id, path, chunks)
    for session_id, (target, chunks) in moved.items():
        if session_id in sealed:
            sealed[session_id].prefix, sealed[session_id].chunks = target, chunks
    return {key: value for key, value in sealed.items() if _PREFIX.fullmatch(value.prefix)}


def _manifests(session_ids: list[int]) -> dict[int, dict[int, str]]:
    rows: dict[int, dict[int, str]] = defaultdict(dict)
    chunk_rows = RecordingChunk.objects.filter(session_id__in=session_ids)
    for session_id, number, key in chunk_rows.values_list("session_id", "number", "key").iterator(chunk_size=5000):
        rows[session_id][number] = key
    return rows


SHOWN = 10


def _numbers(first: list[int], count: int) -> str:
    shown = ", ".join(str(number) for number in first[:SHOWN])
    return shown + (f" and {count - SHOWN} more" if count > SHOWN else "")


def _rows_gone(manifest: dict[int, str], expected: int) -> tuple[list[int], int]:
    """The first few numbers 1..expected with no manifest row, and how many there are (without
    walking up to ``expected``: a count from the Logbook is as large as the entry says)."""
    first: list[int] = []
    number = 1
    while number <= expected and len(first) < SHOWN:
        if number not in manifest:
            first.append(number)
        number += 1
    return first, expected - sum(1 for present in manifest if 1 <= present <= expected)


def _findings(sealed: Sealed, manifest: dict[int, str], stored: set[str]) -> list[str]:
    if not manifest:
        where = (
            f"{len(stored)} object(s) are still under {sealed.prefix}"
            if stored
            else f"nothing is under {sealed.prefix}"
        )
        return [f"its manifest was removed from the database ({where})"]
    found = []
    first, count = _rows_gone(manifest, max(sealed.chunks, max(manifest)))
    if count:
        found.append(f"chunk(s) {_numbers(first, count)} removed from the manifest")
    # The recorder (and the migration) stores chunk N under exactly chunk_key(prefix, N).
    elsewhere = {number for number, key in manifest.items() if key != chunk_key(sealed.prefix, number)}
    if elsewhere:
        found.append(f"chunk(s) {_numbers(sorted(elsewhere), len(elsewhere))} name another object than their own")
    gone = sorted(number for number, key in manifest.items() if key not in stored and number not in elsewhere)
    if gone:
        found.append(f"chunk(s) {_numbers(gone, len(gone))} removed from storage")
    return found


def recordings_removed_find() -> list[ChainProblem]:
    """One problem per sealed recording some of whose chunks or manifest rows are gone; raises
    EvidenceUncheckable when storage cannot list a recording. A batch of sessions at a time."""
    ordered = sorted(_sealed_recordings().values(), key=lambda item: item.entry_id)
    problems = []
    with ThreadPoolExecutor(LIST_THREADS, thread_name_prefix="recordings-check") as pool:
        for start in range(0, len(ordered), BATCH):
            batch = ordered[start : start + BATCH]
            manifests = _manifests([item.session_id for item in batch])
            try:
                listings = list(pool.map(lambda item: object_names(item.prefix), batch))
            except StorageUnavailable as exc:
                raise EvidenceUncheckable(f"the recordings storage: {exc}") from exc
            for item, stored in zip(batch, listings, strict=True):
                found = _findings(item, manifests.get(item.session_id, {}), stored)
                if found:
                    message = f"terminal session {item.session_id} (sealed by entry #{item.entry_id}): "
                    problems.append(
                        ChainProblem(kind=KIND, entry_ids=[item.entry_id], message=message + "; ".join(found))
                    )
    return problems
