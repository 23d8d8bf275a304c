"""A live session's output on its way to watchers: batched, bounded, numbered, its recent part kept.

The session's ``LiveFeed`` (terminal.live) owns one ``LiveOutput`` and hands it every output byte
and size change as recorded. They are batched every ``BATCH_SECONDS`` and published, through the
feed, to the channel-layer group ``services.watch_group(session_id)`` as ``live.output`` messages
with consecutive ``seq`` numbers. What waits is bounded (``MAX_PENDING_BYTES``): past it, it is
dropped and the sequence skips, so watchers see the gap and resynchronise. The last
``BACKLOG_BYTES`` of published output are kept for a watcher's ``live.snapshot``: everything up
to ``seq`` is in it (it grows only as batches are published). Nothing here ever blocks or slows
the session: at most one batch is on its way at a time, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

BATCH_SECONDS = 0.05
BACKLOG_BYTES = 64 * 1024
MAX_PENDING_BYTES = 256 * 1024


class LiveOutput:
    def __init__(self, *, session_id: int, publish: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.session_id = session_id
        # Sends one message to the watchers (the feed's, which also decides whether anyone listens).
        self._publish = publish
        self._pending: list[tuple[str, Any]] = []
        self._pending_bytes = 0
        self._dropped = False
        self._backlog = bytearray()
        self._seq = 0
        # A batch is flushed by a task started when output waits (none while the terminal is idle).
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def seq(self) -> int:
        """The number of the last batch published (a gap counted for each drop)."""
        return self._seq

    @property
    def backlog(self) -> bytes:
        """The last ``BACKLOG_BYTES`` of output published, up to ``seq``."""
        return bytes(self._backlog)

    def output(self, data: bytes) -> None:
        if self._stopped or not data:
            return
        self._pending.append(("o", bytes(data)))
        self._pending_bytes += len(data)
        if self._pending_bytes > MAX_PENDING_BYTES:
            # Publishing cannot keep up: drop, and let the sequence's gap resynchronise watchers.
            self._pending.clear()
            self._pending_bytes = 0
            self._dropped = True
        self._flush_soon()

    def resize(self, cols: int, rows: int) -> None:
        if not self._stopped:
            self._pending.append(("r", [cols, rows]))
            self._flush_soon()

    def stop(self) -> None:
        """Take no more output; nothing more is scheduled (``drain`` publishes what waits)."""
        self._stopped = True

    async def drain(self) -> None:
        """After ``stop``: the batch on its way (at most as long as a publish may take) first, then
        what still waits."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if self._flushing is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flushing
        with contextlib.suppress(Exception):
            await self._flush()

    def _flush_soon(self) -> None:
        """Publish what waits in BATCH_SECONDS, one batch at a time, in order."""
        if self._flush_timer is None and self._flushing is None and not self._stopped:
            self._flush_timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_timer = None
        if self._stopped:
            return
        self._flushing = asyncio.ensure_future(self._flush())
        self._flushing.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing = None
        if not task.cancelled() and task.exception() is not None:
            logger.debug("live feed of session %s: flush failed", self.session_id, exc_info=task.exception())
        if self._pending or self._dropped:
            self._flush_soon()

    async def _flush(self) -> None:
        events, self._pending, self._pending_bytes = self._pending, [], 0
        dropped, self._dropped = self._dropped, False
        if not events and not dropped:
            return
        for kind, value in events:
            if kind == "o":
                self._backlog.extend(value)
        if len(self._backlog) > BACKLOG_BYTES:
            del self._backlog[: len(self._backlog) - BACKLOG_BYTES]
        self._seq += 2 if dropped else 1
        if events:
            await self._publish({"type": "live.output", "seq": self._seq, "events": [list(e) for e in events]})
