"""An open session seen live: its output to watchers, who is watching, moderated sessions, ending it.

Every session that records through terminal.live_recording (the browser terminal's
``ShellSession``, the CLI sessions of terminal.proxy) owns one ``LiveFeed``. The API, all of it
called on the session's event loop:

    feed = LiveFeed(
        session_id=record.pk,             # the TerminalSession row
        moderated=account.require_session_join,
        cols=80, rows=24,
        on_observers=async (ObserversChange) -> None,   # people began / stopped watching
        on_moderation=async (state: str) -> None,       # "waiting" | "paused" | "running"
        on_moderated=async (state: str) -> None,        # moderation turned on while it runs
        on_close=(reason: str) -> None,                 # a watcher ended the session: end it, show reason
        channel="",                                     # optional: a channel the caller receives on
    )
    await feed.start()          # joins services.session_group(session_id); never raises
    await feed.handle(message)  # with ``channel``: each message the caller got on it for the feed
    feed.output(data)           # every output byte as recorded; never blocks, never slows the session
    feed.resize(cols, rows)     # every size change as recorded
    feed.state / feed.running   # moderation: "running" (unmoderated: always), "waiting", "paused"
    await feed.wait_running()   # returns while running (or once stopped): hold output/input until then
    feed.watching               # the names watching now, one per person
    await feed.moderate()       # the account's sessions are now moderated (idempotent)
    await feed.stop(reason)     # the session ended: watchers are told why; idempotent

``on_observers`` gets ``ObserversChange(joined, left, watching)``: names, for the person's own
screen ("<name> is watching this session", "<name> stopped watching"). Show them OUTSIDE the
recorded stream (the browser terminal sends ``notice`` frames; a CLI proxy writes them to the
client's terminal only), never into the shell. ``on_moderation`` says when to tell the person
"Waiting for an approver to join…" (before the first), that the session paused (the last approver
left) or runs again; while not running, forward no input and read no output (``wait_running``).
``on_close`` is called when someone ends the session from Live now or the watch page (the reason
already says who and why): end the session with it as the reason shown to the person.

Moderation turned on while the session is open: ``live.moderate`` (terminal.live_services, at the
account's save) or the feed's own re-read every ``MODERATION_CHECK_SECONDS`` (terminal.rounds: a
lost message, an update() without the signal) calls ``moderate``. It pauses at once unless an
approver watches, ``on_moderation`` says so, ``on_moderated`` gets the state (for the record and
the person). Turned off again, it stays moderated until it ends (a new session reads it afresh).

The session group's messages (``live.resync``, ``live.nudge``, ``terminal.close``) come to a
channel of the feed's own, which it receives on, unless ``channel`` names one the caller already
receives on (the browser terminal's consumer): the feed then joins the group with that channel,
and the caller passes each of those messages to ``handle``. One channel-layer receiver per
terminal instead of two: each waiting receive is three tasks and a queue in channels_redis.

How it works. Output is batched, numbered and published to the channel-layer group
``services.watch_group(session_id)`` as ``live.output`` messages by terminal.live_output, which
keeps the last of it as a backlog: a watcher (terminal.watch) joins the watch group, then sends
``live.resync`` to the session group and gets a ``live.snapshot`` (that backlog, the size, the
state, at a ``seq``), then the live messages after it. Who watches comes from terminal.presence
(Redis, every web process), read every ``PRESENCE_POLL_SECONDS`` and when a watcher nudges
(``live.nudge``); state changes go to watchers as ``live.state``, the end as ``live.ended``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer

from ssmchannel.waiting import Event, cancel_and_wait
from terminal import presence, rounds, services
from terminal.live_output import LiveOutput

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 1.0
PRESENCE_POLL_SECONDS = 2.0
# How often an unmoderated session reads again whether its account now moderates its sessions.
MODERATION_CHECK_SECONDS = 5.0
# After a watcher asked for a snapshot, output is published even before presence shows it.
AUDIENCE_GRACE_SECONDS = 15.0

RUNNING, WAITING, PAUSED = "running", "waiting", "paused"


@dataclass(frozen=True)
class ObserversChange:
    joined: tuple[str, ...]
    left: tuple[str, ...]
    watching: tuple[str, ...]


class LiveFeed:
    def __init__(
        self,
        *,
        session_id: int,
        moderated: bool = False,
        cols: int = 80,
        rows: int = 24,
        on_observers: Callable[[ObserversChange], Awaitable[None]] | None = None,
        on_moderation: Callable[[str], Awaitable[None]] | None = None,
        on_close: Callable[[str], None] | None = None,
        on_moderated: Callable[[str], Awaitable[None]] | None = None,
        channel: str = "",
    ) -> None:
        self.session_id = int(session_id)
        self.moderated = moderated
        self.cols, self.rows = cols, rows
        self._on_observers = on_observers
        self._on_moderation = on_moderation
        self._on_close = on_close
        self._on_moderated = on_moderated
        self._layer: Any = None
        self._channel = channel
        self._own_channel = not channel  # a channel of its own, which it then receives on
        self._state = WAITING if moderated else RUNNING
        self._running = Event()
        if not moderated:
            self._running.set()
        self._output = LiveOutput(session_id=self.session_id, publish=self._publish)
        self._nudged = Event()
        self._watchers: list[presence.Watcher] = []
        self._audience_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    # --- the session's side -----------------------------------------------------------------
    async def start(self) -> None:
        self._layer = get_channel_layer()
        if self._layer is not None:
            try:
                if self._own_channel:
                    self._channel = await self._layer.new_channel()
                await self._layer.group_add(services.session_group(self.session_id), self._channel)
            except Exception:
                logger.warning("live feed of session %s: channel layer unavailable", self.session_id, exc_info=True)
                self._channel = ""
        await self._refresh_presence()
        self._tasks = [asyncio.create_task(self._presence_loop())]
        if self._channel and self._own_channel:
            self._tasks.append(asyncio.create_task(self._receive_loop()))

    def output(self, data: bytes) -> None:
        self._output.output(data)

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self._output.resize(cols, rows)

    @property
    def state(self) -> str:
        return self._state

    @property
    def running(self) -> bool:
        return self._state == RUNNING

    @property
    def watching(self) -> tuple[str, ...]:
        return _names(self._watchers)

    async def wait_running(self) -> None:
        await self._running.wait()

    async def stop(self, reason: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._output.stop()
        self._running.set()  # nothing may stay held behind a session that ended
        await cancel_and_wait(*self._tasks)
        await self._output.drain()  # a batch on its way (at most PUBLISH_TIMEOUT_SECONDS) goes first
        await self._publish({"type": "live.ended", "reason": reason}, force=True)
        if self._channel:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._layer.group_discard(services.session_group(self.session_id), self._channel),
                    PUBLISH_TIMEOUT_SECONDS,
                )

    # --- output to watchers (terminal.live_output batches it) ---------------------------------
    def _has_audience(self) -> bool:
        return bool(self._watchers) or time.monotonic() < self._audience_until

    async def _publish(self, message: dict[str, Any], *, force: bool = False) -> None:
        if self._layer is None or not (force or self._has_audience()):
            return
        try:
            await asyncio.wait_for(
                self._layer.group_send(services.watch_group(self.session_id), message), PUBLISH_TIMEOUT_SECONDS
            )
        except Exception:
            # Watchers see the gap in ``seq`` and ask again; the session itself never waits on them.
            logger.debug("live feed of session %s: not published", self.session_id, exc_info=True)

    # --- messages to this session -------------------------------------------------------------
    async def _receive_loop(self) -> None:
        while not self._stopped:
            try:
                message = await self._layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("live feed of session %s: receive failed", self.session_id, exc_info=True)
                await asyncio.sleep(1)
                continue
            try:
                await self.handle(message)
            except Exception:
                logger.warning(
                    "live feed of session %s: %s failed", self.session_id, message.get("type"), exc_info=True
                )

    async def handle(self, message: dict[str, Any]) -> None:
        """One message of the session group (from the feed's own channel, or passed on by its caller)."""
        if self._stopped:
            return
        kind = message.get("type")
        if kind == "terminal.close":
            if self._on_close is not None:
                self._on_close(str(message.get("reason") or "Ended."))
        elif kind == "live.resync":
            self._audience_until = time.monotonic() + AUDIENCE_GRACE_SECONDS
            self._nudged.set()
            reply_to = str(message.get("reply_to") or "")
            if reply_to:
                await asyncio.wait_for(self._layer.send(reply_to, self._snapshot()), PUBLISH_TIMEOUT_SECONDS)
        elif kind == "live.nudge":
            self._nudged.set()
        elif kind == "live.moderate":
            await self.moderate()

    def _snapshot(self) -> dict[str, Any]:
        # Everything up to ``seq`` is in the backlog (it grows only as batches are published).
        return {
            "type": "live.snapshot",
            "seq": self._output.seq,
            "data": self._output.backlog,
            "cols": self.cols,
            "rows": self.rows,
            "state": self._state,
            "watching": list(self.watching),
        }

    # --- who watches; moderation ---------------------------------------------------------------
    async def _presence_loop(self) -> None:
        next_moderation_check = time.monotonic() + MODERATION_CHECK_SECONDS
        while not self._stopped:
            # asyncio.timeout, not wait_for: wait_for runs the wait in a task of its own.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PRESENCE_POLL_SECONDS):
                    await self._nudged.wait()
            self._nudged.clear()
            if not self.moderated and time.monotonic() >= next_moderation_check:
                next_moderation_check = time.monotonic() + MODERATION_CHECK_SECONDS
                await self._check_moderation()
            await self._refresh_presence()

    async def _check_moderation(self) -> None:
        """Read whether the account moderates its sessions now (a ``live.moderate`` lost, or never
        sent); moderate if it does."""
        try:
            # With every other open session's of this process, in one query (terminal.rounds).
            moderated = await rounds.session_moderated(self.session_id)
        except Exception:
            logger.warning("live feed of session %s: moderation not read", self.session_id, exc_info=True)
            return
        if moderated:
            await self.moderate()

    async def moderate(self) -> None:
        """The account's sessions are now moderated: from here this one runs only while an approver
        watches. Idempotent; a session moderated from its start is already."""
        if self.moderated or self._stopped:
            return
        self.moderated = True
        # Held at once on the watchers last read (no input may pass meanwhile), then told.
        if self._set_state(self._next_state(self._watchers)):
            await self._state_changed()
        if self._on_moderated is not None:
            await self._call(self._on_moderated(self._state))
        self._nudged.set()  # who watches is read again at once: an approver who just left or came

    async def _refresh_presence(self) -> None:
        try:
            # With every other open session's of this process, in one Redis pipeline (terminal.rounds).
            current = list(await rounds.session_watchers(self.session_id))
        except Exception:
            logger.warning("live feed of session %s: presence unreadable", self.session_id, exc_info=True)
            # A moderated session does not run on a watcher it cannot see.
            current = [] if self.moderated else self._watchers
        before, self._watchers = self._watchers, current
        joined = _names([w for w in current if w.user_id not in {b.user_id for b in before}])
        left = _names([w for w in before if w.user_id not in {c.user_id for c in current}])
        if (joined or left) and self._on_observers is not None:
            await self._call(self._on_observers(ObserversChange(joined=joined, left=left, watching=self.watching)))
        if self._set_state(self._next_state(current)):
            await self._state_changed()
        elif joined or left:
            await self._publish_state()

    def _next_state(self, watchers: list[presence.Watcher]) -> str:
        """Moderated: running while an approver watches, else waiting (never ran) or paused."""
        if not self.moderated:
            return self._state
        if any(watcher.approver for watcher in watchers):
            return RUNNING
        return PAUSED if self._state == RUNNING else self._state

    def _set_state(self, state: str) -> bool:
        """Enter ``state`` (the gate with it, at once); whether it changed."""
        if state == self._state:
            return False
        self._state = state
        if state == RUNNING:
            self._running.set()
        else:
            self._running.clear()
        return True

    async def _state_changed(self) -> None:
        if self._on_moderation is not None:
            await self._call(self._on_moderation(self._state))
        await self._publish_state()

    async def _publish_state(self) -> None:
        await self._publish({"type": "live.state", "state": self._state, "watching": list(self.watching)})

    async def _call(self, callback: Awaitable[None]) -> None:
        try:
            await callback
        except Exception:
            logger.warning("live feed of session %s: a callback failed", self.session_id, exc_info=True)


def _names(watchers: list[presence.Watcher]) -> tuple[str, ...]:
    """One name per person, in a stable order."""
    seen: dict[int, str] = {}
    for watcher in watchers:
        seen.setdefault(watcher.user_id, watcher.name)
    return tuple(sorted(seen.values()))
