"""The periodic checks of every open terminal in this web process, answered in rounds.

Each open terminal checks every few seconds that its browser session is still signed in and its
instance's region still its account's, reads its request's end time, writes its heartbeat, reads
who watches it and whether its account now moderates its sessions. One call each would put about
one database call per terminal per second on Django's single database thread: at a
thousand terminals that thread is busy all the time, and opening a terminal waits behind it.

A ``Rounds`` takes the calls of one kind as they come: the first starts a round at once, and
every call that arrives while a round runs goes into the next, which answers them all with one
call (one query, or one Redis pipeline). With few terminals each round holds one call, as
before; with many, the number of calls stays about the same however many terminals are open.
A round that fails fails each of its callers, who handle it as they handled their own call.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from accounts.cli_tokens import api_tokens_expire_at
from audit.origin import logbook_cli_token_as
from requests_app.selectors import access_requests_expire_at
from terminal import live_services, presence, recorder, services
from terminal.threads import in_db_thread, off_loop

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

# The most keys one round sends in one call; past it, the round makes several calls.
ROUND_KEYS = 500


@dataclass
class _Waiting(Generic[K, R]):
    calls: list[tuple[K, asyncio.Future[R | None]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class Rounds(Generic[K, R]):
    """Calls ``answer(keys)`` for every key asked for meanwhile; each caller gets its key's value
    (None for a key the answer leaves out). ``run`` takes the answer off the event loop."""

    def __init__(
        self,
        name: str,
        answer: Callable[[list[K]], dict[K, R]],
        run: Callable[[Callable[[list[K]], dict[K, R]]], Callable[[list[K]], Awaitable[dict[K, R]]]],
    ) -> None:
        self.name = name
        self._answer = answer
        self._run = run
        # One queue per event loop (daphne has one; each test has its own).
        self._waiting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waiting[K, R]] = (
            weakref.WeakKeyDictionary()
        )

    async def ask(self, key: K) -> R | None:
        loop = asyncio.get_running_loop()
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = _Waiting()
        future: asyncio.Future[R | None] = loop.create_future()
        waiting.calls.append((key, future))
        if waiting.task is None:
            # Started on the loop's next turn: every call made in this turn joins the first round.
            waiting.task = loop.create_task(self._rounds(waiting), name=f"rounds-{self.name}")
        return await future

    async def _rounds(self, waiting: _Waiting[K, R]) -> None:
        # The task is every open terminal's: not the CLI sign-in of the one whose call started it.
        with logbook_cli_token_as(None):
            await self._answer_rounds(waiting)

    async def _answer_rounds(self, waiting: _Waiting[K, R]) -> None:
        calls: list[tuple[K, asyncio.Future[R | None]]] = []
        try:
            while waiting.calls:
                calls, waiting.calls = waiting.calls, []
                calls = [(key, future) for key, future in calls if not future.done()]  # a closed terminal's
                keys = list(dict.fromkeys(key for key, _ in calls))
                try:
                    answers: dict[K, R] = {}
                    for start in range(0, len(keys), ROUND_KEYS):
                        answers.update(await self._run(self._answer)(keys[start : start + ROUND_KEYS]))
                except Exception as exc:
                    for _, future in calls:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for key, future in calls:
                    if not future.done():
                        future.set_result(answers.get(key))
                calls = []
        finally:
            waiting.task = None
            # Cancelled with the loop: nobody may wait forever on a round that will not come.
            for _, future in [*calls, *waiting.calls]:
                if not future.done():
                    future.cancel()
            waiting.calls = []


def _signed_in(pairs: list[tuple[str, int]]) -> dict[tuple[str, int], bool]:
    return services.terminal_sessions_signed_in(pairs=pairs)


def _expire_at(request_ids: list[int]) -> dict[int, datetime | None]:
    return access_requests_expire_at(pks=request_ids)


def _sign_ins_end_at(token_ids: list[int]) -> dict[int, datetime]:
    return api_tokens_expire_at(pks=token_ids)


def _ended(request_ids: list[int]) -> dict[int, str]:
    return services.requests_ended_messages(request_ids=request_ids)


def _region_off(grant_ids: list[int]) -> dict[int, str]:
    return services.grants_region_refusals(grant_ids=grant_ids)


def _heartbeats(beats: list[recorder.Heartbeat]) -> dict[recorder.Heartbeat, None]:
    recorder.terminal_heartbeats(beats=beats)
    return {}


def _moderated(session_ids: list[int]) -> dict[int, bool]:
    return live_services.sessions_moderated(session_ids=session_ids)


def _watchers(session_ids: list[int]) -> dict[int, list[presence.Watcher]]:
    return presence.watchers(session_ids=session_ids)


signed_in_rounds: Rounds[tuple[str, int], bool] = Rounds("signed-in", _signed_in, in_db_thread)
expire_at_rounds: Rounds[int, datetime | None] = Rounds("expire-at", _expire_at, in_db_thread)
ended_rounds: Rounds[int, str] = Rounds("request-ended", _ended, in_db_thread)
region_off_rounds: Rounds[int, str] = Rounds("region-off", _region_off, in_db_thread)
sign_in_ends_rounds: Rounds[int, datetime] = Rounds("sign-in-ends", _sign_ins_end_at, in_db_thread)
heartbeat_rounds: Rounds[recorder.Heartbeat, None] = Rounds("heartbeat", _heartbeats, in_db_thread)
moderated_rounds: Rounds[int, bool] = Rounds("moderated", _moderated, in_db_thread)
# Redis, not the database: a thread of its own, so it never waits behind the ORM's calls.
watcher_rounds: Rounds[int, list[presence.Watcher]] = Rounds("watchers", _watchers, off_loop)


async def session_signed_in(session_key: str | None, user_id: int) -> bool:
    """``terminal.services.terminal_session_signed_in``, in this process's next round."""
    if not session_key:
        return False
    return bool(await signed_in_rounds.ask((session_key, user_id)))


async def request_expires_at(request_id: int) -> datetime | None:
    """When the request ends (``requests_app.selectors.access_requests_expire_at``), in this process's next round."""
    return await expire_at_rounds.ask(request_id)


async def request_ended(request_id: int) -> str | None:
    """What a terminal of this request says as it closes once the request is over
    (``terminal.services.requests_ended_messages``), None while it is not; in this process's next round."""
    return await ended_rounds.ask(request_id)


async def region_taken_off(grant_id: int) -> str | None:
    """What a session on this grant says as it closes once its instance's region is no longer among
    its account's (``terminal.services.grants_region_refusals``), None while it is; in this process's
    next round."""
    return await region_off_rounds.ask(grant_id)


async def region_refusal(grant_id: int, *, who: str) -> str | None:
    """``region_taken_off`` for an open session's periodic check: a read that fails is logged (``who``
    names the session) and taken as no refusal, for the session to read again at its next round."""
    try:
        return await region_taken_off(grant_id)
    except Exception:
        logger.warning("%s on grant %s: its region not read", who, grant_id, exc_info=True)
        return None


async def sign_in_ends_at(token_id: int) -> datetime | None:
    """When a CLI proxy connection's token ends (``accounts.cli_tokens.api_tokens_expire_at``), None
    once it is revoked; in this process's next round."""
    return await sign_in_ends_rounds.ask(token_id)


async def heartbeat(beat: recorder.Heartbeat) -> None:
    """``terminal.recorder.terminal_heartbeats`` for one session, in this process's next round."""
    await heartbeat_rounds.ask(beat)


async def session_watchers(session_id: int) -> Sequence[presence.Watcher]:
    """``terminal.presence.watchers`` for one session, in this process's next round."""
    return await watcher_rounds.ask(session_id) or []


async def session_moderated(session_id: int) -> bool:
    """Whether this open session's account moderates its sessions now
    (``terminal.live_services.sessions_moderated``), in this process's next round."""
    return bool(await moderated_rounds.ask(session_id))
