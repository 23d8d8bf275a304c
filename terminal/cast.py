"""The cast download's body: what is kept of a recording (``terminal.recorder.recording_read``, each
chunk checked against its manifest row), spooled and hashed whole, and compared with the SHA-256 the
Logbook sealed before a byte of it is sent. A recording whose manifest was changed (a row pointed at
another chunk, rows removed) still matches its rows chunk by chunk: only the sealed digest tells it
from the one sealed, so nothing is sent until that digest is known to match.

The spool holds ``SPOOL_MEMORY_BYTES`` in memory and the rest in a temporary file (a recording is as
large as what its terminal printed: never held whole in the web process), deleted once sent.
"""

from __future__ import annotations

import hmac
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from terminal.models import TerminalSession
from terminal.recorder import KeptRecording, recording_read
from terminal.storage import READ_BLOCK

SPOOL_MEMORY_BYTES = 2 * READ_BLOCK


@dataclass
class CastRead:
    """What was read of a recording for its download: ``kept`` (its digest, where it stopped and why)
    and its bytes in ``spool``, ``matches`` when that digest is the one sealed."""

    kept: KeptRecording
    spool: IO[bytes]
    sealed_sha256: str
    matches: bool

    def close(self) -> None:
        self.spool.close()

    def body(self) -> Iterator[bytes]:
        """The bytes read, a block at a time from the start; the spool is closed (deleted) at the end."""
        try:
            self.spool.seek(0)
            while block := self.spool.read(READ_BLOCK):
                yield block
        finally:
            self.spool.close()


def cast_read(session: TerminalSession, *, sealed_sha256: str, sealed_chunks: int | None) -> CastRead:
    """Read what is kept of ``session``'s recording (the ``sealed_chunks`` first chunks) into a spool,
    hashing it as it goes, and compare it with ``sealed_sha256`` (none sealed: never a match)."""
    kept, chunks = recording_read(session, sealed_sha256=sealed_sha256, sealed_chunks=sealed_chunks)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115  # closed by CastRead
    try:
        for data in chunks:
            spool.write(data)
            del data
    except BaseException:
        spool.close()
        raise
    matches = bool(sealed_sha256) and bool(kept.sha256) and hmac.compare_digest(kept.sha256, sealed_sha256)
    return CastRead(kept=kept, spool=spool, sealed_sha256=sealed_sha256, matches=matches)
