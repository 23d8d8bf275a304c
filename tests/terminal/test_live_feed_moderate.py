"""terminal.live's feed when its account's sessions become moderated while it runs: told through the
real Redis channel layer by terminal.live_services (what the account's save triggers), it holds the
session unless an approver already watches. Whole sessions are in test_live_moderation_turned_on.py."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from terminal import live, live_services
from terminal.live import LiveFeed
from terminal.models import TerminalSession
from tests.conftest import World
from tests.terminal.helpers import session_cookie
from tests.terminal.test_live_feed import Told, fresh_channel_layer, run, until, watcher  # noqa: F401  (a fixture)
from tests.terminal.test_live_permissions import _grant, _session

pytestmark = pytest.mark.usefixtures("live_db")


class ToldModerated(Told):
    def __init__(self) -> None:
        super().__init__()
        self.moderated: list[str] = []

    async def moderated_now(self, state: str) -> None:
        self.moderated.append(state)

    def feed(self, session: TerminalSession, *, moderated: bool = False) -> LiveFeed:
        return LiveFeed(
            session_id=session.pk,
            moderated=moderated,
            on_observers=self.observers,
            on_moderation=self.moderation,
            on_close=self.close,
            on_moderated=self.moderated_now,
        )


def _moderate(session: TerminalSession) -> int:
    return live_services.account_sessions_moderate(account_id=session.grant.request.account_id)


def test_an_unwatched_feed_pauses_at_once_when_its_account_becomes_moderated(world: World) -> None:
    session = _session(_grant(world, world.web))
    told = ToldModerated()

    async def scenario() -> None:
        feed = told.feed(session)
        await feed.start()
        assert feed.running
        assert await database_sync_to_async(_moderate)(session) == 1
        await until(lambda: told.moderated, timeout=5, what="moderation applied")
        assert feed.moderated and feed.state == live.PAUSED and not feed.running
        await feed.stop("done")

    run(scenario)
    assert told.moderated == [live.PAUSED] and told.states == [live.PAUSED]


def test_a_feed_an_approver_watches_runs_on_and_pauses_when_they_leave(world: World) -> None:
    session = _session(_grant(world, world.web))
    approver_cookie = session_cookie(world.approver)
    told = ToldModerated()

    async def scenario() -> None:
        feed = told.feed(session)
        await feed.start()
        approver = watcher(session.pk, approver_cookie)
        assert (await approver.connect(timeout=5))[0]
        await until(lambda: told.changes, timeout=5, what="the approver counted")
        await database_sync_to_async(_moderate)(session)
        await until(lambda: told.moderated, timeout=5, what="moderation applied")
        assert feed.running
        await feed.handle({"type": "live.moderate"})  # again: nothing more happens
        await approver.disconnect()
        await until(lambda: feed.state == live.PAUSED, timeout=5, what="the pause")
        await asyncio.sleep(0.1)
        await feed.stop("done")

    run(scenario)
    assert told.moderated == [live.RUNNING] and told.states == [live.PAUSED]
