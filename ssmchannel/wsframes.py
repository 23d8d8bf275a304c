"""A lean path for the data channel's binary frames, under an open websockets connection.

websockets parses each frame with a generator, queues it, and wakes ``recv()`` once per
message; with the agent's 1,024-byte stream messages that is a third of a receiver's work,
and building each outgoing frame through its protocol object is another large share.

``FrameTap`` takes over an open connection's ``data_received``: it parses the frames bulk
transfer is made of (unfragmented binary frames, masked exactly when the peer must mask
them, within the connection's max_size) in one loop per ``data_received`` and queues them
for ``take()``, so a receiver handles every frame of one read in one pass. At the first other
frame (ping, close, text, a fragment, anything unusual) it hands the bytes from that frame on
to websockets and steps aside for good: control frames, closing and protocol errors stay
websockets' own. ``encode_binary`` builds one binary frame for ``transport.write`` (a client's
frames masked with a fresh random key, with websockets' C ``apply_mask`` when built).
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
from collections import deque
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.protocol import Side, State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

BINARY_FIN = 0x82  # FIN + opcode 2: the only first byte the fast path parses
MASK_BIT = 0x80
# Frames queued but not yet taken before reading stops (the socket then holds the peer back),
# and their bytes: whichever comes first (4,096 frames of up to max_size each would be GiBs).
HIGH_WATER = 4096
HIGH_WATER_BYTES = 4 * 1024 * 1024
_MASKED_126 = bytes((BINARY_FIN, 126 | MASK_BIT))
_MASKED_127 = bytes((BINARY_FIN, 127 | MASK_BIT))
_UNMASKED_126 = bytes((BINARY_FIN, 126))
_UNMASKED_127 = bytes((BINARY_FIN, 127))
_MEDIUM = struct.Struct(">HH")  # a frame's first two bytes and its 16-bit length
_NO_HEAD = (-1, 0)  # in place of ``_MEDIUM``'s two values where fewer than 4 bytes are left: no match
_MASK_POOL = 4096  # random mask bytes fetched per os.urandom call (1,024 frames)


class _MaskPool(threading.local):
    """Random mask bytes for the client frames of every connection on this thread's event loop.

    One pool per thread, not per connection: 4 KiB held by each open data channel was a
    noticeable share of what an idle browser terminal costs the web process. A mask is
    never handed out twice (RFC 6455 wants them unpredictable, not tied to a connection).
    """

    def __init__(self) -> None:
        self.masks = b""
        self.at = 0

    def next(self) -> bytes:
        at = self.at
        if at + 4 > len(self.masks):
            self.masks = os.urandom(_MASK_POOL)
            at = 0
        self.at = at + 4
        return self.masks[at : at + 4]


_mask_pool = _MaskPool()


class FrameTap:
    """The binary frames of one websockets connection, parsed in batches (see the module doc)."""

    def __init__(
        self, connection: Connection, *, high_water: int = HIGH_WATER, high_water_bytes: int = HIGH_WATER_BYTES
    ) -> None:
        self.connection = connection
        protocol = connection.protocol
        # Frames from a client are masked, frames from a server are not (RFC 6455 5.1).
        self.is_client = protocol.side is Side.CLIENT
        self._expect_mask = 0 if self.is_client else MASK_BIT
        self._medium_head = BINARY_FIN << 8 | self._expect_mask | 126  # the first two bytes, 16-bit length
        self.max_size = protocol.max_message_size  # an unfragmented frame is a whole message
        self.high_water = high_water
        self.high_water_bytes = high_water_bytes
        self.frames: deque[bytes] = deque()
        self.queued_bytes = 0  # the payloads in ``frames``
        self.active = False  # parsing here; False before install() and after stepping aside
        # The start of a frame not yet whole, and how long that frame is (0: its header is not
        # whole either). Further pieces are appended (to a bytearray) until the frame is
        # complete, so a frame in many small reads is not copied whole on each of them.
        self._buffer: bytes | bytearray = b""
        self._wanted = 0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._original_received = connection.data_received
        self._original_lost = connection.connection_lost

    def install(self) -> bool:
        """Start parsing here; False (and nothing changed) unless websockets holds no unread bytes."""
        protocol = self.connection.protocol
        if (
            protocol.state is not State.OPEN
            or protocol.reader.buffer
            or protocol.events
            or self.connection.transport is None
        ):
            return False
        if self.connection.recv_messages.frames.queue:
            return False
        self.active = True
        # Instance attributes: the event loop's transport looks these up on every call.
        self.connection.data_received = self._data_received  # type: ignore[method-assign]
        self.connection.connection_lost = self._connection_lost  # type: ignore[method-assign]
        return True

    # --- receiving -------------------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        if not self.active:
            self._original_received(data)
            return
        held = self._buffer
        if held:
            if len(held) + len(data) < self._wanted:
                # Still only part of the frame: nothing for a waiter yet.
                if type(held) is bytes:
                    held = self._buffer = bytearray(held)
                held += data
                return
            if type(held) is bytes:
                buffer = held + data  # the usual case: the frame's second piece completes it
            else:
                held += data
                buffer = bytes(held)
            self._buffer = b""
        else:
            buffer = data
        size = len(buffer)
        position = 0
        wanted = 0
        queued = 0
        frames = self.frames
        expect_mask = self._expect_mask
        max_size = self.max_size
        # The bulk of a transfer: frames of 126 to 65,535 bytes, whose header is two bytes and a
        # 16-bit length, read in one unpack (others take the general branch below).
        medium = self._medium_head
        medium_max = 65535 if max_size is None else max_size
        unpack_medium = _MEDIUM.unpack_from
        while size - position >= 2:
            # Under 4 bytes left, no 16-bit length to unpack: the general branch reads what it can.
            head, length = unpack_medium(buffer, position) if size - position >= 4 else _NO_HEAD
            if head == medium and length <= medium_max:
                start = position + 4
            else:
                first = buffer[position]
                second = buffer[position + 1]
                length = second & 0x7F
                if first != BINARY_FIN or second & MASK_BIT != expect_mask:
                    self._step_aside(buffer[position:])
                    break
                start = position + 2
                if length == 126:
                    if size - start < 2:
                        break
                    length = int.from_bytes(buffer[start : start + 2], "big")
                    start += 2
                elif length == 127:
                    if size - start < 8:
                        break
                    length = int.from_bytes(buffer[start : start + 8], "big")
                    start += 8
                if max_size is not None and length > max_size:
                    self._step_aside(buffer[position:])  # websockets refuses it with the right close code
                    break
            # The payload, after a header read either way: inline, not a call (this runs once a frame).
            if expect_mask:
                end = start + 4 + length
                if end > size:
                    wanted = end - position
                    break
                frames.append(apply_mask(buffer[start + 4 : end], buffer[start : start + 4]))
            else:
                end = start + length
                if end > size:
                    wanted = end - position
                    break
                frames.append(buffer[start:end])
            queued += length
            position = end
        self.queued_bytes += queued
        if self.active:
            if position < size:
                self._buffer = buffer[position:]
                self._wanted = wanted
            if not position:
                return  # only part of a frame so far: nothing for a waiter yet
        self._wake()

    def _step_aside(self, rest: bytes) -> None:
        """From here on websockets reads the connection, starting with ``rest``."""
        self.active = False
        self._buffer = b""
        self.connection.data_received = self._original_received  # type: ignore[method-assign]
        if self._paused:
            self._paused = False
            self.connection.transport.resume_reading()
        self._original_received(rest)

    def _connection_lost(self, exc: Exception | None) -> None:
        self.active = False
        self._original_lost(exc)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if (
            self.active
            and not self._paused
            and (len(self.frames) >= self.high_water or self.queued_bytes >= self.high_water_bytes)
        ):
            self._paused = True
            self.connection.transport.pause_reading()

    def take(self) -> list[bytes]:
        """Every frame parsed so far, oldest first (and reading resumes if it was held)."""
        frames = list(self.frames)
        self.frames.clear()
        self.queued_bytes = 0
        if self._paused and self.active:
            self._paused = False
            self.connection.transport.resume_reading()
        return frames

    def take_one(self) -> bytes:
        """The oldest frame parsed (there must be one)."""
        frame = self.frames.popleft()
        self.queued_bytes -= len(frame)
        if (
            self._paused
            and self.active
            and len(self.frames) < self.high_water // 2
            and self.queued_bytes < self.high_water_bytes // 2
        ):
            self._paused = False
            self.connection.transport.resume_reading()
        return frame

    async def wait(self) -> None:
        """Until a frame is queued, the tap stepped aside, or the connection is lost.

        A read that held only part of a frame wakes the waiter too: it waits on for the rest
        (websockets' own recv would never hear of it, as the tap reads the connection)."""
        while not self.frames and self.active:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # --- sending ---------------------------------------------------------------------

    def encode_binary(self, payload: bytes) -> bytes:
        """One unfragmented binary frame carrying ``payload``, ready for ``transport.write``."""
        length = len(payload)
        if length < 126:
            header = bytes((BINARY_FIN, length | (MASK_BIT if self.is_client else 0)))
        elif length < 65536:
            header = bytes((BINARY_FIN, 126 | (MASK_BIT if self.is_client else 0))) + length.to_bytes(2, "big")
        else:
            header = bytes((BINARY_FIN, 127 | (MASK_BIT if self.is_client else 0))) + length.to_bytes(8, "big")
        if not self.is_client:
            return header + payload
        mask = _mask_pool.next()
        return header + mask + apply_mask(payload, mask)

    def encode_many(self, payloads: list[bytes]) -> list[bytes]:
        """The binary frames carrying ``payloads`` (a batch), as pieces for one ``transport.write``.

        The pieces joined are the frames ``encode_binary`` builds, in order (each frame's header
        and its payload stay apart, not copied into one another first); a client's frames are
        masked with fresh keys from one random read.
        """
        pieces: list[bytes] = []
        append = pieces.append
        if not self.is_client:
            for payload in payloads:
                length = len(payload)
                if 126 <= length < 65536:
                    append(_UNMASKED_126 + length.to_bytes(2, "big"))
                elif length < 126:
                    append(bytes((BINARY_FIN, length)))
                else:
                    append(_UNMASKED_127 + length.to_bytes(8, "big"))
                append(payload)
            return pieces
        masks = os.urandom(4 * len(payloads))
        at = 0
        for payload in payloads:
            length = len(payload)
            mask = masks[at : at + 4]
            at += 4
            if 126 <= length < 65536:
                append(_MASKED_126 + length.to_bytes(2, "big") + mask)
            elif length < 126:
                append(bytes((BINARY_FIN, length | MASK_BIT)) + mask)
            else:
                append(_MASKED_127 + length.to_bytes(8, "big") + mask)
            append(apply_mask(payload, mask))
        return pieces


def tap(connection: Any) -> FrameTap | None:
    """A FrameTap installed on ``connection``, or None where it cannot take over."""
    if not isinstance(connection, Connection):
        return None
    frame_tap = FrameTap(connection)
    return frame_tap if frame_tap.install() else None
