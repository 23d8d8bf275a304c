"""The agent's view of its client across WebSockets: a session outlives a dropped data channel.

In AWS the client's WebSocket ends at the service (the Message Gateway Service), not at the
agent: when it drops, the agent keeps the session (its shell, its connection to the target,
its sequence numbers), the session's status becomes Disconnected, and a client that calls
ResumeSession gets a new token and stream URL with which it reconnects to the same session.
Only TerminateSession, the idle timeout, or the agent itself ending the session (the target
closed, the TerminateSession flag) end it.

``ResumableTransport`` is that, for one session's ``ReliableLink``: a Transport whose inner
WebSocket can be lost and replaced. ``recv`` waits across a loss for the next WebSocket;
what is sent while none is attached is dropped, as the service would drop it, and the link
sends it again once one is (its retransmission). ``close`` ends it for good.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ssmchannel.errors import TransportClosed
from ssmchannel.transport import FLUSH_BYTES, Frame, WebSocketTransport

T = TypeVar("T")


class ResumableTransport:
    """One session's client connection, whichever WebSocket carries it now."""

    def __init__(
        self,
        first: WebSocketTransport,
        *,
        token: str = "",
        on_detach: Callable[[], None] | None = None,
        on_attach: Callable[[], None] | None = None,
    ) -> None:
        self._inner: WebSocketTransport | None = first
        self._attached = asyncio.Event()
        self._attached.set()
        self._ended: str | None = None
        self.on_detach = on_detach
        self.on_attach = on_attach
        self.attachments = 1  # WebSockets this session has had (1 + resumptions)
        self.token = token  # the token the current WebSocket opened with

    @property
    def connected(self) -> bool:
        return self._inner is not None

    @property
    def ended(self) -> bool:
        return self._ended is not None

    @property
    def close_reason(self) -> str | None:
        return self._inner.close_reason if self._inner is not None else None

    async def attach(self, inner: WebSocketTransport) -> None:
        """A resumed client's WebSocket takes over (an older one still open is closed)."""
        if self._ended is not None:
            with contextlib.suppress(Exception):
                await inner.close("session ended")
            return
        previous, self._inner = self._inner, inner
        self.attachments += 1
        self._attached.set()
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous.close("the session was resumed on another connection")
        if self.on_attach is not None:
            self.on_attach()

    def _detach(self, inner: WebSocketTransport) -> None:
        if self._inner is not inner or self._ended is not None:
            return
        self._inner = None
        self._attached.clear()
        if self.on_detach is not None:
            self.on_detach()

    async def recv(self) -> Frame:
        return await self._from_attached(lambda inner: inner.recv())

    async def recv_batch(self) -> list[Frame]:
        """As ``recv``, every frame already received at once (WebSocketTransport.recv_batch)."""
        return await self._from_attached(lambda inner: inner.recv_batch())

    async def _from_attached(self, read: Callable[[WebSocketTransport], Awaitable[T]]) -> T:
        """``read`` on the attached data channel; waits out a detached spell, raises once ended."""
        while True:
            if self._ended is not None:
                raise TransportClosed(self._ended)
            inner = self._inner
            if inner is None:
                await self._attached.wait()
                continue
            try:
                return await read(inner)
            except TransportClosed:
                self._detach(inner)

    def _attached_for_send(self) -> WebSocketTransport | None:
        """The attached data channel; None while detached (what is sent is lost, as the service would
        lose it, and the link resends it); TransportClosed once the session ended."""
        if self._inner is None and self._ended is not None:
            raise TransportClosed(self._ended)
        return self._inner

    def send_nowait(self, frame: bytes) -> None:
        inner = self._attached_for_send()
        if inner is None:
            return
        try:
            inner.send_nowait(frame)
        except TransportClosed:
            self._detach(inner)

    def send_batch_nowait(self, frames: list[bytes]) -> None:
        inner = self._attached_for_send()
        if inner is None:
            return
        try:
            inner.send_batch_nowait(frames)
        except TransportClosed:
            self._detach(inner)

    def backed_up(self, limit: int = FLUSH_BYTES) -> bool:
        return self._inner is not None and self._inner.backed_up(limit)

    async def drain(self) -> None:
        inner = self._inner
        if inner is not None:
            try:
                await inner.drain()
            except TransportClosed:
                self._detach(inner)

    async def send(self, frame: Frame) -> None:
        inner = self._attached_for_send()
        if inner is None:
            return
        try:
            await inner.send(frame)
        except TransportClosed:
            self._detach(inner)

    async def ping(self) -> None:
        inner = self._inner
        if inner is not None:
            with contextlib.suppress(TransportClosed):
                await inner.ping()

    async def close(self, reason: str = "") -> None:
        """End the session's connection for good (safe to call twice)."""
        if self._ended is None:
            self._ended = reason or "session ended"
        self._attached.set()  # wake a recv() waiting for a client
        inner, self._inner = self._inner, None
        if inner is not None:
            with contextlib.suppress(Exception):
                await inner.close(reason)

    @staticmethod
    async def wait_closed(inner: WebSocketTransport) -> None:
        """Until ``inner``'s WebSocket has closed (dropped, replaced, or the session ended)."""
        await inner.connection.wait_closed()
