"""A recording uploaded while the terminal runs, in chunks, off the event loop.

``ChunkSink`` is a terminal.recording sink: it collects whole lines in memory and hands them,
as one chunk, to the upload threads every few seconds (``cut``, called by the session's
timer) or as soon as ``max_bytes`` are waiting. The upload threads are shared by every terminal
of the process (a thread per open terminal would cost each its own stack), and one sink's chunks
are stored by one of them at a time, strictly in order, each retried a few times; once one
cannot be stored, none after it is (a gap would make the rest unplayable), so what is kept is
always a playable prefix. A sink stores ``CHUNKS_PER_TURN`` and then queues again behind the
other sinks: a terminal whose output keeps up with storage never holds a thread the others need.
No Django here: storing a chunk (object and manifest row) is the ``store`` function given to it.

Storage slower than the terminal (a slow or retrying S3) would make the chunks waiting for it grow
without bound in the web process: past ``BEHIND_BYTES`` waiting the sink is ``behind``, and its owner
stops reading what it records until storage catches up (terminal.live_recording). At the end ``close``
waits for the rest at most ``close_seconds``; past that (or ``give_up``) nothing more is stored nor
counted, and what was kept says so (``Kept.gave_up``): the recording is a partial one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

logger = logging.getLogger(__name__)

# Upload threads per process, for all its terminals (chunks are stored every few seconds each).
UPLOAD_THREADS = 8
# Cut chunks waiting for storage past which a sink is ``behind``.
BEHIND_BYTES = 8 * 1024 * 1024
# Chunks a sink stores before its thread serves whichever sink waited longest (the pool's queue).
CHUNKS_PER_TURN = 1
GAVE_UP = "storage did not keep up: chunks from {number} on were not stored by the close"


@lru_cache(maxsize=1)
def upload_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="recording-upload")


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
    # The failure is storage not keeping up by the close (``give_up``), not a chunk it refused.
    gave_up: bool = False


class ChunkSink:
    def __init__(
        self,
        store: Callable[[Chunk, bool], None],
        *,
        max_bytes: int,
        attempts: int,
        backoff: float = 0.5,
        on_failure: Callable[[str], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        close_seconds: float | None = None,
    ) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._on_failure = on_failure
        # Called on an upload thread whenever this sink hands it back (after each turn: the thread
        # then serves other terminals, or none): e.g. close that thread's database connection.
        self._on_idle = on_idle
        # How long close() waits for the chunks still waiting before it gives up on them (None: no bound).
        self._close_seconds = close_seconds
        self._buffer = bytearray()
        self._seconds = 0.0
        self._next = 1
        self._closed = False
        self._lock = threading.Lock()
        # Chunks cut and not yet taken by an upload thread (rarely more than one); at most one
        # thread drains them at a time. A list, and the event made only by close() while a drain
        # runs: a deque and a threading.Event would each hold a 760-byte block in every terminal.
        self._queue: list[tuple[int, bytearray, float]] = []
        self._queued_bytes = 0  # in chunks cut and not yet stored or given up (the one being stored too)
        self._draining = False
        self._drained: threading.Event | None = None
        # Written by the upload thread only (``give_up`` only sets the failure); read after close (or
        # approximately, for display). Nothing is counted once a failure is set.
        self._kept_sha256 = hashlib.sha256()
        self._kept_chunks = 0
        self._kept_size = 0
        self._kept_seconds = 0.0
        self._failure = ""
        self._gave_up = False

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
        with self._lock:
            self._queue.append((self._next, waiting, self._seconds))
            self._queued_bytes += len(waiting)
            self._next += 1
            start = not self._draining
            self._draining = True
        if start:
            upload_pool().submit(self._drain)

    @property
    def written_seconds(self) -> float:
        """The time of the last event handed to this sink (stored or not yet)."""
        return self._seconds

    @property
    def failed(self) -> bool:
        return bool(self._failure)

    @property
    def waiting(self) -> int:
        """Bytes in chunks cut and not yet stored (nor given up on)."""
        return self._queued_bytes

    @property
    def behind(self) -> bool:
        """Whether more than ``BEHIND_BYTES`` of chunks wait for storage: its owner should stop reading
        what it records until it is no longer (nothing is dropped meanwhile; this is advice)."""
        return self._queued_bytes > BEHIND_BYTES

    # --- the upload thread --------------------------------------------------------------------
    def _drain(self) -> None:
        """One turn: store this sink's next chunks (``CHUNKS_PER_TURN``), then hand the thread back, and
        if more wait, queue the next turn behind every other sink's. One turn at a time: ``_draining``
        stays set from the first submit until a turn finds nothing waiting, so never two at once."""
        pool_open = True
        while True:
            for _ in range(CHUNKS_PER_TURN):
                with self._lock:
                    item = self._queue.pop(0) if self._queue else None
                if item is None:
                    break
                try:
                    self._upload(*item)
                except Exception:  # never leave the sink "draining" forever
                    logger.exception("recording chunk %s: upload failed unexpectedly", item[0])
                with self._lock:
                    self._queued_bytes -= len(item[1])
            if self._on_idle is not None:
                try:
                    self._on_idle()
                except Exception:
                    logger.exception("recording upload: the idle hook failed")
            with self._lock:
                if not self._queue:
                    self._draining = False
                    if self._drained is not None:
                        self._drained.set()
                    return
            if pool_open:
                try:
                    upload_pool().submit(self._drain)
                    return
                except RuntimeError:  # the pool takes no more (the process exits): go on in this thread
                    pool_open = False
                    logger.warning("recording upload: the upload threads are shutting down; storing on")

    def _upload(self, number: int, waiting: bytearray, seconds: float) -> None:
        if self._failure:
            return  # after a lost chunk nothing later is playable: not stored
        data = bytes(waiting)
        chunk = Chunk(number, data, hashlib.sha256(data).hexdigest(), seconds)
        # The whole recording's digest, advanced here (the writer leaves it to this thread), but
        # only committed once the chunk is stored: what is kept is always a stored prefix.
        joined = self._kept_sha256.copy()
        joined.update(data)
        for attempt in range(1, self._attempts + 1):
            if attempt > 1 and self._failure:
                return  # given up on meanwhile (``give_up``): no more tries
            try:
                self._store(chunk, attempt > 1)
            except Exception as exc:
                if attempt < self._attempts:
                    logger.warning("recording chunk %s: try %s failed: %s", chunk.number, attempt, exc)
                    time.sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                logger.error("recording chunk %s could not be stored: %s", chunk.number, exc)
                with self._lock:
                    if self._failure:
                        return  # given up on meanwhile: that is what the recording says
                    self._failure = f"storage failed at chunk {chunk.number}: {exc}"[:200]
                if self._on_failure is not None:
                    self._on_failure(self._failure)
                return
            break
        with self._lock:
            if self._failure:
                return  # stored after the sink gave up (``give_up``): not counted (the manifest may list it)
            self._kept_sha256 = joined
            self._kept_chunks += 1
            self._kept_size += len(chunk.data)
            self._kept_seconds = chunk.seconds

    # --- the end ------------------------------------------------------------------------------
    def close(self) -> None:
        """Send the rest and wait until every chunk is stored or given up (blocking: call it in a
        thread), at most ``close_seconds``: then ``give_up`` on what still waits."""
        if self._closed:
            return
        self.cut()
        self._closed = True
        with self._lock:
            if not self._draining or self._failure:
                return  # nothing waits, or nothing more will be counted
            self._drained = drained = threading.Event()
        if not drained.wait(self._close_seconds):
            self.give_up()

    def give_up(self) -> None:
        """Store nothing more: storage did not keep up by the close. What was stored stays the
        recording (a prefix: partial); a chunk being stored may still land, and is not counted."""
        with self._lock:
            if self._failure:
                return
            number = self._kept_chunks + 1
            self._failure = GAVE_UP.format(number=number)
            self._gave_up = True
            dropped = sum(len(item[1]) for item in self._queue)
            self._queue.clear()
            self._queued_bytes -= dropped
        logger.error("recording: %s", self._failure)

    def digest(self) -> str:
        """The SHA-256 of every chunk stored, joined (terminal.recording's writer asks for it at close)."""
        return self.kept().sha256

    def kept(self) -> Kept:
        with self._lock:
            return Kept(
                chunks=self._kept_chunks,
                size=self._kept_size,
                sha256=self._kept_sha256.hexdigest() if self._kept_chunks else "",
                seconds=self._kept_seconds,
                failure=self._failure,
                gave_up=self._gave_up,
            )
