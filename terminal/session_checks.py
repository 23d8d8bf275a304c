"""What an open browser terminal tells the page about others and checks on its own, between its
start and its end (terminal.session's ``ShellSession`` mixes it in): who watches and whether an
approver does (terminal.live), and, in one periodic task, the browser session still signed in
and the instance's region still its account's, the recording's chunks and heartbeat, the idle
limit and the request's end time (ended there, the expiry sweep run or not). Nothing of it
reaches the shell or the recording's output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from accounts.models import User
from requests_app.models import Grant
from terminal import frames, live, rounds, services
from terminal.bridge import LoginKeys
from terminal.expiry import ExpiryWatch
from terminal.live import LiveFeed, ObserversChange
from terminal.models import TerminalSession
from terminal.recording import AsciicastWriter
from terminal.threads import in_db_thread

if TYPE_CHECKING:
    from terminal.frames import Browser

logger = logging.getLogger(__name__)

# How often an open terminal checks that its browser session still exists (signed out elsewhere,
# flushed, expired); the sign-out signal closes it at once, this catches every other way.
SESSION_CHECK_SECONDS = 3
# How often an open terminal re-reads its request's end time (an extension moves its "Ends" line);
# the 10- and 2-minute warnings are timed to the mark in between.
EXPIRY_CHECK_SECONDS = 5
WAITING_MESSAGE = "Waiting for an approver to join… This account's sessions start once an approver watches."
PAUSED_MESSAGE = "Paused: no approver is watching. Waiting for an approver to join…"
# A page whose output has waited this long for its acknowledgement (terminal.flow) is closed.
STALLED_SECONDS = 300.0
NOT_READING = "The browser stopped reading the terminal's output for 5 minutes; the terminal was closed."


class SessionChecks:
    """Mixed into ShellSession, which sets these attributes and the methods named below."""

    user: User
    grant_id: int
    grant: Grant | None
    browser: Browser
    live: LiveFeed | None
    recording: AsciicastWriter | None
    record: TerminalSession | None
    _session_key: str | None
    _closing: bool
    _shell_running: bool
    _last_input: float
    _expiry: ExpiryWatch
    _next_expiry: float
    _next_chunk: float
    behind_since: float | None
    login_keys: LoginKeys | None
    ssm_session_id: str

    if TYPE_CHECKING:  # ShellSession's own, and RecordingMixin's (terminal.live_recording)

        async def _status(self, message: str) -> None: ...

        async def send_text(self, text: str) -> None: ...

        def end_soon(self, reason: str, *, code: int = ..., notify: bool = True) -> None: ...

        async def _recording_tick(self) -> None: ...

    # --- a CA key retired (terminal.ca_key_retired, after commit) -----------------------------
    async def ca_key_retired(self, fingerprint: str, reason: str) -> None:
        """Ended, and on record (``session.terminated``), if the retired CA key ``fingerprint``
        signed a certificate the portal logged in to the instance with: sshd does not re-check it."""
        keys = self.login_keys
        if keys is None or fingerprint not in keys.signers or self._closing or self.grant is None:
            return
        try:
            await in_db_thread(services.terminal_ended_for_ca_key)(
                grant=self.grant, client="browser", fingerprint=fingerprint, certificate="login",
                ssm_session_id=self.ssm_session_id,
            )  # fmt: skip
        finally:
            self.end_soon(reason)

    # --- the IAM gate asked again (terminal.iam_denied, terminal.services.iam_recheck) -----------
    async def iam_denied(self, *, grant_id: int, user_id: int, reason: str, refusal: str) -> None:
        """Ended, and on record (``session.terminated``, ``iam_denied``), if it is this person's
        terminal on this grant: a new session would be refused, so this one does not go on."""
        if grant_id != self.grant_id or user_id != self.user.pk or self._closing or self.grant is None:
            return
        try:
            await in_db_thread(services.terminal_ended_for_iam)(
                grant=self.grant, client="browser", refusal=refusal, ssm_session_id=self.ssm_session_id
            )
        finally:
            self.end_soon(reason)

    # --- the instance's region taken off its account (terminal.region_off, and read every few seconds)
    async def region_off(self, *, grant_ids: list[int], region: str, reason: str) -> None:
        """Ended, and on record (``session.terminated``, ``region``), if it is on one of these grants:
        no session may run in a region taken off the account (terminal.services.regions)."""
        if self.grant_id not in grant_ids or self._closing or self.grant is None:
            return
        try:
            await in_db_thread(services.terminal_ended_for_region)(
                grant=self.grant, client="browser", region=region, ssm_session_id=self.ssm_session_id
            )
        finally:
            self.end_soon(reason)

    async def _region_still_on(self) -> bool:
        """False once the instance's region is no longer among its account's, the terminal then ended
        (as ``region_off``: the change's message may have been lost). Unreadable: read again next time."""
        if self.grant is None:
            return True
        refused = await rounds.region_refusal(self.grant_id, who="terminal")
        if refused is None:
            return True
        await self.region_off(grant_ids=[self.grant_id], region=self.grant.instance.region, reason=refused)
        return False

    # --- watchers and moderation (terminal.live): told on the page, never to the shell ---------
    async def _notice(self, message: str) -> None:
        await self.send_text(frames.encode("notice", level="info", message=message, at=""))

    async def _moderation_notice(self, message: str) -> None:
        # The status line says paused or connected (``_moderation_changed``); this says why.
        await self._notice(message)

    async def _observers_changed(self, change: ObserversChange) -> None:
        for name in change.joined:
            await self._notice(f"{name} is watching this session.")
        for name in change.left:
            await self._notice(f"{name} stopped watching this session.")

    async def _moderation_changed(self, state: str) -> None:
        if state == live.RUNNING:
            await self._status("Connected.")
            await self._notice("An approver joined: the session runs.")
        elif state == live.PAUSED:
            await self._status(PAUSED_MESSAGE)
            await self._notice(PAUSED_MESSAGE)
        else:
            await self._status(WAITING_MESSAGE)

    async def _watch(self) -> None:
        """Every periodic check of an open terminal, in one task (an open terminal's tasks are much
        of what it costs the web process): the browser session still signed in and the instance's
        region still its account's (from the start);
        once recording, a chunk and the heartbeat every PASSPORT_RECORDING_CHUNK_SECONDS; once the
        shell runs, ``PASSPORT_TERMINAL_IDLE_SECONDS`` without input, the request's
        end time to the browser as it changes, with warnings before it comes, and the end once it
        has come or the request is over (``_end_if_request_over``), and a browser that
        has acknowledged none of its output for ``STALLED_SECONDS`` (terminal.flow).

        The end time goes as ``ends`` and ``notice`` envelopes, which the page shows: nothing
        reaches the shell and nothing is recorded as the session's output.
        """
        limit = settings.PASSPORT_TERMINAL_IDLE_SECONDS
        next_sign_in = time.monotonic() + SESSION_CHECK_SECONDS
        while not self._closing:
            if time.monotonic() >= next_sign_in:
                if not await self._signed_in():
                    self.end_soon(await self._signed_out_reason())
                    return
                if not await self._region_still_on():
                    return
                next_sign_in = time.monotonic() + SESSION_CHECK_SECONDS
            wake = next_sign_in
            if self.recording is not None and self.record is not None:
                if time.monotonic() >= self._next_chunk:
                    await self._recording_tick()
                    self._next_chunk = time.monotonic() + settings.PASSPORT_RECORDING_CHUNK_SECONDS
                wake = min(wake, self._next_chunk)
            if self._shell_running:
                if self.live is not None and not self.live.running:
                    self._last_input = time.monotonic()  # waiting for an approver is not idling
                idle_ends = self._last_input + limit
                if time.monotonic() >= idle_ends:
                    self.end_soon(f"Closed after {limit} seconds without input.")
                    return
                if time.monotonic() >= self._next_expiry:
                    self._next_expiry = time.monotonic() + await self._check_expiry()
                wake = min(wake, idle_ends, self._next_expiry)
            behind_since = self.behind_since
            if behind_since is not None:
                if time.monotonic() >= behind_since + STALLED_SECONDS:
                    self.end_soon(NOT_READING, code=frames.CLOSE_NOT_READING)
                    return
                wake = min(wake, behind_since + STALLED_SECONDS)
            await asyncio.sleep(max(0.0, min(wake - time.monotonic(), 5)))

    async def _signed_in(self) -> bool:
        try:
            # With every other open terminal's of this process, in one query (terminal.rounds).
            return await rounds.session_signed_in(self._session_key, self.user.pk)
        except Exception:
            logger.warning("terminal on grant %s: sign-in not checked", self.grant_id, exc_info=True)
            return True  # checked again in SESSION_CHECK_SECONDS; signing out also closes it at once

    async def _signed_out_reason(self) -> str:
        try:
            return await in_db_thread(services.terminal_signed_out_reason)(user_id=self.user.pk)
        except Exception:
            return services.SIGNED_OUT_MESSAGE

    async def _check_expiry(self) -> float:
        """Send what changed about the request's end time; seconds until it is worth reading again.
        Once the request is over, end the terminal instead (``_end_if_request_over``)."""
        assert self.grant is not None
        if await self._end_if_request_over():
            return EXPIRY_CHECK_SECONDS
        try:
            expires_at = await rounds.request_expires_at(self.grant.request_id)
        except Exception:
            # The idle limit above must go on being checked when the database hiccups.
            logger.warning("terminal on grant %s: end time not read", self.grant_id, exc_info=True)
            return EXPIRY_CHECK_SECONDS
        now = timezone.now()
        for text in self._expiry.update(expires_at, now):
            await self.send_text(text)
        return self._expiry.next_check_in(expires_at, now, most=EXPIRY_CHECK_SECONDS)

    async def _end_if_request_over(self) -> bool:
        """End the terminal, with the request's own reason, once the request is no longer active or
        past its end time, as the CLI proxy's connections do (terminal.proxy.upkeep; the rule is
        ``terminal.services.requests_ended_messages``); True if it did. The ending's ``terminal.close``
        may be lost, and past the end time none comes until the expiry sweep runs (not while the
        workers are down). Unreadable: read again at the next check."""
        assert self.grant is not None
        try:
            ended = await rounds.request_ended(self.grant.request_id)
        except Exception:
            logger.warning("terminal on grant %s: the request's state not read", self.grant_id, exc_info=True)
            return False
        if ended is None:
            return False
        self.end_soon(ended)
        return True
