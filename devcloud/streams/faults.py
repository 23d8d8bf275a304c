"""Fault injection: a Transport that drops, duplicates, reorders and delays the agent's messages.

Only stream messages and acknowledgements are touched (the protocol recovers those); the
unsequenced channel_closed is never faulted, as nothing could recover it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass

from ssmchannel.errors import TransportClosed
from ssmchannel.messages import MessageType, peek_message_type
from ssmchannel.transport import Frame, Transport

# Stream messages and acks are what fault injection may touch; they are the ones the
# protocol recovers (by resending, or by the next ack making up for a lost one).
_FAULTABLE = frozenset({MessageType.INPUT_STREAM_DATA, MessageType.OUTPUT_STREAM_DATA, MessageType.ACKNOWLEDGE})
# Held messages are let go after this long without new traffic, so the end of a burst is
# reordered and delayed like the rest instead of waiting for the sender's retransmission.
_REORDER_FLUSH = 0.02


@dataclass(frozen=True)
class Faults:
    """What goes wrong on the agent's side of the wire; every probability is 0..1."""

    loss: float = 0.0  # outgoing stream messages and acks dropped
    duplication: float = 0.0  # ... sent twice
    reorder_window: int = 0  # hold up to this many and let them go in random order
    delay: float = 0.0  # extra latency per message, uniform in [0, delay] seconds
    incoming_loss: float = 0.0  # incoming stream messages and acks dropped before processing
    seed: int = 0

    @property
    def active(self) -> bool:
        return bool(self.loss or self.duplication or self.reorder_window > 1 or self.delay or self.incoming_loss)


class FaultyTransport:
    """A Transport that misbehaves as ``faults`` says, with a seeded random generator."""

    def __init__(self, inner: Transport, faults: Faults, rng: random.Random) -> None:
        self.inner = inner
        self.faults = faults
        self.rng = rng
        self.stats: Counter[str] = Counter()
        self._held: list[bytes] = []
        self._flush: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, str) or peek_message_type(frame) not in _FAULTABLE:
            await self.inner.send(frame)
            return
        if self.rng.random() < self.faults.loss:
            self.stats["dropped"] += 1
            return
        copies = 2 if self.rng.random() < self.faults.duplication else 1
        self.stats["duplicated"] += copies - 1
        for _ in range(copies):
            if self.faults.reorder_window > 1:
                self._held.append(frame)
                while len(self._held) >= self.faults.reorder_window:
                    self.stats["reordered"] += 1
                    await self._release(self._held.pop(self.rng.randrange(len(self._held))))
                if self._held and self._flush is None:
                    self._flush = asyncio.create_task(self._flush_later())
            else:
                await self._release(frame)

    async def _release(self, frame: bytes) -> None:
        delay = self.rng.uniform(0, self.faults.delay) if self.faults.delay else 0.0
        if delay <= 0:
            with contextlib.suppress(TransportClosed):
                await self.inner.send(frame)
            return
        self.stats["delayed"] += 1
        task = asyncio.create_task(self._send_later(frame, delay))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_later(self, frame: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        # A lost race with close() is just one more lost message.
        with contextlib.suppress(TransportClosed):
            await self.inner.send(frame)

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(_REORDER_FLUSH)
            held, self._held = self._held, []
            self.rng.shuffle(held)
            for frame in held:
                await self._release(frame)
        finally:
            self._flush = None

    async def recv(self) -> Frame:
        while True:
            frame = await self.inner.recv()
            if (
                isinstance(frame, bytes)
                and self.faults.incoming_loss
                and peek_message_type(frame) in _FAULTABLE
                and self.rng.random() < self.faults.incoming_loss
            ):
                self.stats["incoming_dropped"] += 1
                continue
            return frame

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self, reason: str = "") -> None:
        for task in [*self._background, *([self._flush] if self._flush else [])]:
            task.cancel()
        await self.inner.close(reason)
