"""A watcher's standing as moderator is read again at every beat, not only when the socket opened.

A moderated session runs while an approver of its account watches (terminal.live); an auditor may
watch it but does not let it run. Someone who is both, and loses the approving half while watching
(can_approve cleared, the membership removed, site admin taken away), still may watch: the socket
stays open, but the session must pause. And an auditor who becomes an approver lets it run.
Real ASGI application, Redis channel layer and presence, as in test_live_feed.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers

from accounts.models import User
from audit.models import LogbookEntry
from terminal import live, presence
from tests.conftest import World
from tests.factories import make_membership, make_user
from tests.terminal.helpers import Screen, session_cookie
from tests.terminal.test_live_feed import Told, run, until, watcher
from tests.terminal.test_live_permissions import _grant, _session

pytestmark = pytest.mark.usefixtures("live_db")

# One beat of the watcher (when it reads the person again), then the feed's next look at presence.
NOTICED_WITHIN = presence.BEAT_SECONDS + live.PRESENCE_POLL_SECONDS + 3


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> None:
    channel_layers.backends.clear()  # a layer per test: each test runs its own event loop


def _approving_removed(world: World, who: User) -> None:
    who.memberships.filter(account=world.prod).update(can_approve=False)


def _membership_removed(world: World, who: User) -> None:
    who.memberships.filter(account=world.prod).delete()


def _site_admin_removed(world: World, who: User) -> None:
    who.is_superuser = who.is_staff = False
    who.save(update_fields=["is_superuser", "is_staff"])


LOSSES: dict[str, tuple[Callable[[World, User], None], bool]] = {
    # how approval goes, and whether the person approved through a membership (else as site admin)
    "approving-removed": (_approving_removed, True),
    "membership-removed": (_membership_removed, True),
    "site-admin-demoted-to-auditor": (_site_admin_removed, False),
}


@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_moderated_session_pauses_once_its_only_approving_watcher_loses_approval(world: World, loss: str) -> None:
    change, by_membership = LOSSES[loss]
    session = _session(_grant(world, world.web))
    # An auditor who also approves prod: watches either way, moderates only as approver.
    dora = make_user("dora", is_auditor=True, is_superuser=not by_membership, is_staff=not by_membership)
    if by_membership:
        make_membership(dora, world.prod, "admin", can_approve=True)
    cookie = session_cookie(dora)
    told = Told()

    async def scenario() -> tuple[str, Screen]:
        feed = told.feed(session, moderated=True)
        await feed.start()
        comm = watcher(session.pk, cookie)
        assert (await comm.connect(timeout=5))[0]
        screen = Screen(comm)
        await asyncio.wait_for(feed.wait_running(), 5)
        await database_sync_to_async(change)(world, dora)
        await until(lambda: feed.state == live.PAUSED, timeout=NOTICED_WITHIN, what="the pause")
        # Paused for good: later beats do not bring the old standing back.
        await asyncio.sleep(presence.BEAT_SECONDS + live.PRESENCE_POLL_SECONDS)
        state = feed.state
        await feed.stop("done")
        await screen.until(lambda s: s.closed_code is not None, timeout=5, what="the end")
        await comm.disconnect()
        return state, screen

    state, screen = run(scenario)
    assert state == live.PAUSED and told.states == [live.RUNNING, live.PAUSED]
    # Still an auditor: she goes on watching (no close), and nobody was told she left and came back.
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": "done"} and screen.closed_code == 4000
    assert [(c.joined, c.left) for c in told.changes] == [(("dora",), ())]
    started = LogbookEntry.objects.get(action="session.watch_started", actor=dora)
    assert started.detail["moderator"] is True
    changed = LogbookEntry.objects.get(action="session.watch_moderator_changed", actor=dora)
    assert changed.detail == {
        "terminal_session": session.pk,
        "of": world.requester.username,
        "moderator": False,
    }


def test_an_auditor_watching_who_becomes_an_approver_lets_the_session_run(world: World) -> None:
    session = _session(_grant(world, world.web))
    cookie = session_cookie(world.auditor)
    told = Told()

    async def scenario() -> None:
        feed = told.feed(session, moderated=True)
        await feed.start()
        comm = watcher(session.pk, cookie)
        assert (await comm.connect(timeout=5))[0]
        await until(lambda: told.changes, timeout=5, what="the auditor counted")
        assert feed.state == live.WAITING
        await database_sync_to_async(make_membership)(world.auditor, world.prod, "admin", can_approve=True)
        await asyncio.wait_for(feed.wait_running(), NOTICED_WITHIN)
        await feed.stop("done")
        await comm.disconnect()

    run(scenario)
    assert told.states == [live.RUNNING]
    assert LogbookEntry.objects.get(action="session.watch_started", actor=world.auditor).detail["moderator"] is False
    changed = LogbookEntry.objects.get(action="session.watch_moderator_changed", actor=world.auditor)
    assert changed.detail["moderator"] is True
