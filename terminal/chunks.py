"""A recording uploaded while the terminal runs, in chunks, off the event loop.

``ChunkSink`` is a terminal.recording sink: it collects whole lines in memory and hands them,
as one chunk, to a single upload thread every few seconds (``cut``, called by the session's
timer) or as soon as ``max_bytes`` are waiting. The thread stores chunks strictly in order and
retries each a few times; once one cannot be stored, none after it is (a gap would make the rest
unplayable), so what is kept is always a playable prefix. No Django here: storing a chunk (object
and manifest row) is the ``store`` function given to it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    number: int
    data: bytes
    sha256: str
    # The time of its last event, seconds from the recording's start.
    seconds: float


@dataclass(frozen=True)
class Kept:
    """What was stored: how many chunks, their bytes, their SHA-256 joined, and where it stops."""

    chunks: int
    size: int
    sha256: str
    seconds: float
    failure: str


class ChunkSink:
    def __init__(
        self,
        store: Callable[[Chunk, bool], None],
        *,
        max_bytes: int,
        attempts: int,
        backoff: float = 0.5,
        on_failure: Callable[[str], None] | None = None,
        on_thread_exit: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._on_failure = on_failure
        self._on_thread_exit = on_thread_exit
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="recording-upload")
        self._buffer = bytearray()
        self._seconds = 0.0
        self._next = 1
        self._closed = False
        self._lock = threading.Lock()
        # Written by the upload thread only; read after close (or approximately, for display).
        self._kept_sha256 = hashlib.sha256()
        self._kept_chunks = 0
        self._kept_size = 0
        self._kept_seconds = 0.0
        self._failure = ""

    # --- the event loop's side: never blocks --------------------------------------------------
    def write(self, data: bytes, seconds: float) -> None:
        if self._closed:
            return
        self._buffer += data
        self._seconds = seconds
        if len(self._buffer) >= self._max_bytes:
            self.cut()

    def cut(self) -> None:
        """Send what is waiting as one chunk (the timer calls this every few seconds)."""
        if not self._buffer or self._closed:
            return
        # Handed over as it is (no copy, no hashing here): the upload thread does both.
        waiting, self._buffer = self._buffer, bytearray()
        self._executor.submit(self._upload, self._next, waiting, self._seconds)
        self._next += 1

    @property
    def written_seconds(self) -> float:
        """The time of the last event handed to this sink (stored or not yet)."""
        return self._seconds

    @property
    def failed(self) -> bool:
        return bool(self._failure)

    # --- the upload thread --------------------------------------------------------------------
    def _upload(self, number: int, waiting: bytearray, seconds: float) -> None:
        if self._failure:
            return  # after a lost chunk nothing later is playable: not stored
        data = bytes(waiting)
        chunk = Chunk(number, data, hashlib.sha256(data).hexdigest(), seconds)
        for attempt in range(1, self._attempts + 1):
            try:
                self._store(chunk, attempt > 1)
            except Exception as exc:
                if attempt < self._attempts:
                    logger.warning("recording chunk %s: try %s failed: %s", chunk.number, attempt, exc)
                    time.sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                logger.error("recording chunk %s could not be stored: %s", chunk.number, exc)
                with self._lock:
                    self._failure = f"storage failed at chunk {chunk.number}: {exc}"[:200]
                if self._on_failure is not None:
                    self._on_failure(self._failure)
                return
            break
        with self._lock:
            self._kept_sha256.update(chunk.data)
            self._kept_chunks += 1
            self._kept_size += len(chunk.data)
            self._kept_seconds = chunk.seconds

    def _exit(self) -> None:
        if self._on_thread_exit is not None:
            self._on_thread_exit()

    # --- the end ------------------------------------------------------------------------------
    def close(self) -> None:
        """Send the rest and wait until every chunk is stored or given up (blocking: call it in a thread)."""
        if self._closed:
            return
        self.cut()
        self._closed = True
        self._executor.submit(self._exit)
        self._executor.shutdown(wait=True)

    def kept(self) -> Kept:
        with self._lock:
            return Kept(
                chunks=self._kept_chunks,
                size=self._kept_size,
                sha256=self._kept_sha256.hexdigest() if self._kept_chunks else "",
                seconds=self._kept_seconds,
                failure=self._failure,
            )
