"""The watcher's WebSocket (``/ws/watch/<session>/``): one open session's output, read-only, live.

Behind the same origin check and session authentication as the terminal's (passport_portal/asgi.py);
the permission (``accounts.permissions.live_session_visibility``) is checked on connect: 4401
without a sign-in, 4403 for a session this person may not watch. It joins the session's watch
group, says it is here (terminal.presence, refreshed every few seconds: a moderated session runs
on it) and asks the session's feed (terminal.live) for what it printed so far; then relays.

Server -> browser: binary frames are output bytes (the browser writes them into xterm.js, never
into the page), text frames are envelopes ``{"v": 1, "type": ...}``: ``reset`` (``cols``,
``rows``, ``resync``: clear the screen; the bytes that follow are the screen so far), ``resize``
(``cols``, ``rows``), ``state`` (``state``: running / waiting / paused, ``watching``: names),
``closed`` (``reason``), just before the socket closes; ``mark`` (``id``), see below.

Flow control (terminal.flow, shared with the person's own terminal): after every ``ACK_EVERY``
bytes sent the consumer sends a ``mark`` with a random ``id``, which the page echoes once it has
written what came before it: ``{"v": 1, "type": "ack", "id": ...}``. Past ``MAX_UNACKED`` bytes
not acknowledged, no more output is sent and its sequence is forgotten; when the page catches up
it is resynchronised from the session's backlog (a ``reset`` with ``resync``).
A watcher that stays behind for ``STALLED_SECONDS`` is closed (``CLOSE_NOT_READING``).

Browser -> server: the ``ack`` above is the only frame read, checked strictly; anything else is
ignored, and nothing a watcher sends ever reaches the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import replace
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from accounts import permissions
from accounts.models import User
from core.text import visible
from terminal import frames, live_services, presence, selectors, services
from terminal.flow import ACK_EVERY as ACK_EVERY  # the flow control's numbers, as the watch's own
from terminal.flow import MAX_ACK_CHARS as MAX_ACK_CHARS
from terminal.flow import MAX_UNACKED, AckWindow, parse_ack
from terminal.middleware import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from terminal.models import TerminalSession
from terminal.threads import in_db_thread, off_loop

logger = logging.getLogger(__name__)

# Live messages held while the first snapshot is on its way; past either bound, they are dropped
# and the snapshot asked for again.
MAX_HELD = 200
MAX_HELD_BYTES = 512 * 1024
NO_LONGER_ALLOWED = "You signed out, or may no longer watch this session."

# Flow control (the module's docstring; the window is terminal.flow's, shared with the person's own
# terminal). A watcher stalled for STALLED_SECONDS is closed.
STALLED_SECONDS = 60.0
CLOSE_NOT_READING = 4408
NOT_READING = "Your browser stopped reading the session's output; reload the page to watch again."

# Consecutive beats that could not check this person's standing (the database failing) before the
# watcher is closed: it must not go on watching on a standing nobody can check.
MAX_FAILED_BEATS = 3
CLOSE_UNAVAILABLE = 4503
NOT_CHECKED = "Passport could not check that you may still watch this session; reload the page to try again."


def _envelope(kind: str, **fields: Any) -> str:
    return json.dumps({"v": frames.VERSION, "type": kind, **fields})


def _watcher_for(*, user: Any, pk: int) -> tuple[TerminalSession, bool] | None:
    try:
        session = selectors.live_session_get(user=user, pk=pk)
    except Http404:
        return None
    return session, permissions.counts_as_moderator(user, session)


def _standing_now(*, user_id: int, pk: int, session_key: str | None) -> bool | None:
    """None if this person may no longer watch, else whether they count as a moderator now.

    Asked at every beat of the person read now, not the one loaded at connect: an admin may
    have cleared their auditor or site-admin status, their approving or their membership, or
    deactivated them, since. Someone who may still watch (an auditor) may have stopped being a
    moderator, and a moderated session must not go on running on the standing they had.
    """
    if not services.terminal_session_signed_in(session_key=session_key, user_id=user_id):
        return None
    user = User.objects.filter(pk=user_id, is_active=True).first()
    found = None if user is None else _watcher_for(user=user, pk=pk)
    return None if found is None else found[1]


class WatchConsumer(AsyncWebsocketConsumer):
    record: TerminalSession | None = None
    watcher: presence.Watcher | None = None
    _beat_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        found = await in_db_thread(_watcher_for)(user=user, pk=session_id)
        if found is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        record, approver = found
        if record.ended_at is not None:
            await self.accept()
            ended = f"This session has ended: {visible(record.end_reason)}"  # it may quote the far end
            await self.send(text_data=_envelope("closed", reason=ended))
            await self.close(code=frames.CLOSE_ENDED)
            return
        self.record = record
        # The name is shown in the watched person's terminal (and a CLI's): one plain line.
        name = live_services.plain_line(user.label) or user.username
        self.watcher = presence.Watcher(id=self.channel_name, user_id=user.pk, name=name, approver=approver)
        self._seq: int | None = None
        self._held: list[dict[str, Any]] = []
        self._held_bytes = 0
        self._resyncs = 0
        # Flow control: what was sent and not acknowledged; since when output is held back.
        self._window = AckWindow()
        self._stalled_since: float | None = None
        self._since = time.monotonic()
        await self.channel_layer.group_add(services.watch_group(session_id), self.channel_name)
        await self.accept()
        await off_loop(presence.watcher_beat)(session_id=session_id, watcher=self.watcher)
        await in_db_thread(live_services.session_watch_started)(session=record, user=user, moderator=approver)
        await self._to_session({"type": "live.nudge"})
        await self._ask_snapshot()
        self._beat_task = asyncio.create_task(self._beat())

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Read-only: nothing a watcher sends reaches the session. The one frame read is ``ack``."""
        mark = parse_ack(text_data, frames.VERSION)
        if mark is None or self.record is None or not self._window.acknowledge(mark):
            return
        if self._stalled_since is not None and self._window.unacked <= MAX_UNACKED // 2:
            # Caught up: the screen again from the session's backlog, then live output.
            self._stalled_since = None
            self._resyncs += 1
            await self._ask_snapshot()

    async def disconnect(self, code: int) -> None:
        if self._beat_task is not None:
            self._beat_task.cancel()
        record, watcher = self.record, self.watcher
        if record is None or watcher is None:
            return
        self.record = None
        with contextlib.suppress(Exception):
            await off_loop(presence.watcher_gone)(session_id=record.pk, watcher=watcher)
        with contextlib.suppress(Exception):
            await self._to_session({"type": "live.nudge"}, session_id=record.pk)
        with contextlib.suppress(Exception):
            await self.channel_layer.group_discard(services.watch_group(record.pk), self.channel_name)
        await in_db_thread(live_services.session_watch_ended)(
            session=record, user=self.scope["user"], seconds=time.monotonic() - self._since
        )

    # --- towards the session --------------------------------------------------------------------
    async def _to_session(self, message: dict[str, Any], *, session_id: int | None = None) -> None:
        pk = session_id if session_id is not None else (self.record.pk if self.record else None)
        if pk is not None:
            await self.channel_layer.group_send(services.session_group(pk), message)

    async def _ask_snapshot(self) -> None:
        self._seq = None
        self._held, self._held_bytes = [], 0
        await self._to_session({"type": "live.resync", "reply_to": self.channel_name})

    # --- towards the browser, with flow control ------------------------------------------------
    async def _send_counted(self, *, text: str | None = None, data: bytes | None = None) -> bool:
        """Send one frame of the session's screen, unless the browser is too far behind: then hold
        everything back (``_stalled_since``) and forget the sequence; False."""
        size = len(data) if data is not None else len(text or "")
        if self._stalled_since is not None or not self._window.fits(size):
            if self._stalled_since is None:
                self._stalled_since = time.monotonic()
            self._seq = None
            self._held, self._held_bytes = [], 0
            return False
        if data is not None:
            await self.send(bytes_data=data)
        else:
            await self.send(text_data=text)
        mark = self._window.count(size)
        if mark is not None:
            await self.send(text_data=_envelope("mark", id=mark))
        return True

    async def _close_with(self, reason: str, code: int) -> None:
        await self.send(text_data=_envelope("closed", reason=reason))
        await self.close(code=code)

    async def _beat(self) -> None:
        """Still here (every web process counts this watcher) and still allowed to watch: signed in
        (not signed out elsewhere) and still an approver or auditor, counted as moderator only while
        still one (``_standing_now``); no snapshot yet: ask again. A standing that cannot be read
        ``MAX_FAILED_BEATS`` times in a row closes the watcher (fail closed)."""
        user_id = self.scope["user"].pk
        session_key = getattr(self.scope.get("session"), "session_key", None)
        failed = 0
        while self.record is not None and self.watcher is not None:
            await asyncio.sleep(presence.BEAT_SECONDS)
            if self._stalled_since is not None and time.monotonic() - self._stalled_since > STALLED_SECONDS:
                await self._close_with(NOT_READING, CLOSE_NOT_READING)
                return
            try:
                moderator = await in_db_thread(_standing_now)(
                    user_id=user_id, pk=self.record.pk, session_key=session_key
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                # Fail closed: output goes on reaching this socket only while the standing is checked.
                failed += 1
                pk = getattr(self.record, "pk", "?")
                logger.warning("watcher of session %s: standing not checked", pk, exc_info=True)
                if failed >= MAX_FAILED_BEATS:
                    await self._close_with(NOT_CHECKED, CLOSE_UNAVAILABLE)
                    return
                continue
            failed = 0
            if moderator is None:
                await self._close_with(NO_LONGER_ALLOWED, CLOSE_FORBIDDEN)
                return
            try:
                if moderator != self.watcher.approver:
                    await self._moderator_changed(moderator)
                await off_loop(presence.watcher_beat)(session_id=self.record.pk, watcher=self.watcher)
                if self._seq is None and self._stalled_since is None:
                    await self._ask_snapshot()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("watcher of session %s: beat failed", getattr(self.record, "pk", "?"), exc_info=True)

    async def _moderator_changed(self, moderator: bool) -> None:
        """Counted from now on with the standing read at this beat. The new mark is in before the old
        one goes, so the session never sees this watcher leave and come back; then it is nudged to
        read presence at once (pausing, or running, now rather than at its next poll)."""
        record, before = self.record, self.watcher
        if record is None or before is None:
            return
        self.watcher = replace(before, approver=moderator)
        await off_loop(presence.watcher_beat)(session_id=record.pk, watcher=self.watcher)
        await off_loop(presence.watcher_gone)(session_id=record.pk, watcher=before)
        await self._to_session({"type": "live.nudge"})
        await in_db_thread(live_services.session_watch_moderator_changed)(
            session=record, user=self.scope["user"], moderator=moderator
        )

    # --- from the session's live feed (terminal.live) ------------------------------------------
    async def live_snapshot(self, event: dict[str, Any]) -> None:
        if self._seq is not None or self._stalled_since is not None:
            return  # an answer to an earlier request (the first one set the screen), or held back
        self._seq = int(event["seq"])
        reset = _envelope("reset", cols=event["cols"], rows=event["rows"], resync=self._resyncs > 0)
        if not await self._send_counted(text=reset):
            return
        if event.get("data") and not await self._send_counted(data=bytes(event["data"])):
            return
        state = _envelope("state", state=event.get("state", ""), watching=event.get("watching", []))
        if not await self._send_counted(text=state):
            return
        held, self._held, self._held_bytes = self._held, [], 0
        for message in held:
            await self.live_output(message)

    async def live_output(self, event: dict[str, Any]) -> None:
        if self._stalled_since is not None:
            return  # the browser is behind: it gets the screen again once it catches up
        seq = int(event["seq"])
        if self._seq is None:
            self._held.append(event)
            self._held_bytes += sum(len(value) for kind, value in event["events"] if kind == "o")
            if len(self._held) > MAX_HELD or self._held_bytes > MAX_HELD_BYTES:
                await self._ask_snapshot()
            return
        if seq <= self._seq:
            return
        if seq != self._seq + 1:
            # Some output never reached this watcher (it fell behind, or the session dropped it).
            self._resyncs += 1
            await self._ask_snapshot()
            return
        self._seq = seq
        for kind, value in event["events"]:
            if kind == "o":
                sent = await self._send_counted(data=bytes(value))
            elif kind == "r":
                sent = await self._send_counted(text=_envelope("resize", cols=int(value[0]), rows=int(value[1])))
            else:
                continue
            if not sent:
                return

    async def live_state(self, event: dict[str, Any]) -> None:
        if self._seq is None:
            return  # the snapshot on its way says it
        await self._send_counted(
            text=_envelope("state", state=event.get("state", ""), watching=event.get("watching", []))
        )

    async def live_ended(self, event: dict[str, Any]) -> None:
        reason = visible(event.get("reason", "The session ended."))  # it may quote the far end
        await self._close_with(reason, frames.CLOSE_ENDED)
