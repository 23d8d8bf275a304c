"""terminal.live's feed and the watcher's WebSocket (terminal.watch) against the real ASGI
application, the real Redis channel layer and presence, and the database: a feed stands in for the
session's own side (it is what a browser terminal and a CLI proxy session both drive).

Whole sessions on a devcloud host are in test_live_session.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers
from channels.testing import WebsocketCommunicator

from audit.models import LogbookEntry
from passport_portal.asgi import application
from terminal import live, live_output, live_services, presence, watch
from terminal.live import LiveFeed, ObserversChange
from terminal.models import TerminalSession
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.conftest import World
from tests.factories import make_user
from tests.terminal.helpers import ORIGIN, Screen, session_cookie
from tests.terminal.test_live_permissions import _grant, _session

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> None:
    """Each test runs its own event loop (async_to_sync), and channels_redis binds its receive
    locks to the loop that first waited on them: a layer per test, as a web process has one loop."""
    channel_layers.backends.clear()


def watcher(session_id: int, cookie: str | None, *, origin: str = ORIGIN) -> Any:
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, f"/ws/watch/{session_id}/", headers=headers)


class Told:
    """What the feed told its session: observers, moderation states, close reasons."""

    def __init__(self) -> None:
        self.changes: list[ObserversChange] = []
        self.states: list[str] = []
        self.closed: list[str] = []

    async def observers(self, change: ObserversChange) -> None:
        self.changes.append(change)

    async def moderation(self, state: str) -> None:
        self.states.append(state)

    def close(self, reason: str) -> None:
        self.closed.append(reason)

    def feed(self, session: TerminalSession, *, moderated: bool = False) -> LiveFeed:
        return LiveFeed(
            session_id=session.pk,
            moderated=moderated,
            cols=90,
            rows=30,
            on_observers=self.observers,
            on_moderation=self.moderation,
            on_close=self.close,
        )


async def until(predicate: Callable[[], Any], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        await asyncio.sleep(0.02)


def run(coroutine: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(coroutine)()


async def watched(session: TerminalSession, cookie: str) -> tuple[LiveFeed, WebsocketCommunicator, Screen]:
    """A started feed of ``session``, and a watcher (``cookie``'s) whose socket has its first screen."""
    feed = Told().feed(session)
    await feed.start()
    comm = watcher(session.pk, cookie)
    assert (await comm.connect(timeout=5))[0]
    screen = Screen(comm)
    await screen.until(lambda s: s.message("reset"), timeout=5, what="the first screen")
    return feed, comm, screen


def test_a_watcher_gets_the_screen_so_far_then_live_bytes_and_the_end(world: World) -> None:
    session = _session(_grant(world, world.web))
    world.approver.first_name, world.approver.last_name = "Carol", "Approver"
    world.approver.save()
    cookie = session_cookie(world.approver)
    told = Told()
    hostile = b"\x1b]0;owned\x07<img src=x onerror=alert(1)>\x1b[31mred\x1b[0m\r\n"

    async def scenario() -> Screen:
        feed = told.feed(session)
        await feed.start()
        feed.output(b"before you came\r\n")
        await asyncio.sleep(0.2)
        comm = watcher(session.pk, cookie)
        assert (await comm.connect(timeout=5))[0]
        screen = Screen(comm)
        await screen.until(lambda s: b"before you came" in s.output, timeout=5, what="the screen so far")
        assert screen.messages[0] == {"v": 1, "type": "reset", "cols": 90, "rows": 30, "resync": False}
        await until(lambda: told.changes, timeout=5, what="the session told of its watcher")
        # Anything the watcher sends goes nowhere: the feed has no input, the socket stays open.
        await comm.send_to(text_data='{"v": 1, "type": "input", "data": "id\\r"}')
        await comm.send_to(bytes_data=b"rm -rf /\r")
        feed.output(hostile)  # that it arrives; how soon is not a test's question
        await screen.until(lambda s: hostile in s.output, timeout=5, what="live output")
        feed.resize(120, 40)
        await screen.until(lambda s: s.message("resize"), timeout=5, what="the resize")
        await feed.stop("The shell ended.")
        await screen.until(lambda s: s.closed_code is not None, timeout=5, what="the close")
        await comm.disconnect()
        return screen

    screen = run(scenario)
    # Output as bytes, exactly as printed (escape sequences for xterm.js, never text in the page).
    assert screen.output == b"before you came\r\n" + hostile
    assert screen.message("resize") == {"v": 1, "type": "resize", "cols": 120, "rows": 40}
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": "The shell ended."}
    assert screen.closed_code == 4000
    assert told.changes[0] == ObserversChange(joined=("Carol Approver",), left=(), watching=("Carol Approver",))
    assert told.states == [] and told.closed == []
    started = LogbookEntry.objects.get(action="session.watch_started")
    assert started.actor_id == world.approver.pk and started.detail["terminal_session"] == session.pk
    ended = LogbookEntry.objects.get(action="session.watch_ended")
    assert ended.actor_id == world.approver.pk and ended.detail["of"] == world.requester.username


def test_an_idle_feed_keeps_no_flush_task_and_output_in_bursts_arrives_whole_and_in_order(world: World) -> None:
    """A flush is scheduled only while output waits (a thousand idle terminals, no thousand tasks),
    one batch at a time: output written while a batch is being published follows it, in order."""
    session = _session(_grant(world, world.web))
    cookie = session_cookie(world.approver)
    lines = [f"line {n}\r\n".encode() for n in range(300)]

    def idle(feed: LiveFeed) -> bool:
        return feed._output._flush_timer is None and feed._output._flushing is None

    async def scenario() -> tuple[Screen, bool, bool]:
        feed, comm, screen = await watched(session, cookie)
        await until(lambda: idle(feed), timeout=5, what="the feed idle")
        for number, line in enumerate(lines):
            feed.output(line)
            if number % 37 == 0:
                await asyncio.sleep(0.03)  # bursts across batch boundaries and flushes in flight
        busy = not idle(feed)
        await screen.until(lambda s: lines[-1] in s.output, timeout=10, what="the last line")
        await until(lambda: idle(feed), timeout=5, what="the feed idle again")
        await feed.stop("The shell ended.")
        await comm.disconnect()
        return screen, busy, idle(feed)

    screen, busy, idle_at_end = run(scenario)
    assert busy and idle_at_end
    assert screen.output == b"".join(lines)


def test_the_watcher_socket_refuses_whoever_may_not_watch(world: World) -> None:
    session = _session(_grant(world, world.web))

    async def attempt(cookie: str | None, *, origin: str = ORIGIN) -> tuple[bool, int | None]:
        comm = watcher(session.pk, cookie, origin=origin)
        connected, code = await comm.connect(timeout=5)
        if connected:
            await comm.disconnect()
        return connected, code

    assert async_to_sync(attempt)(None) == (False, 4401)
    for user in (world.requester, world.outsider, world.member, world.observer):
        assert async_to_sync(attempt)(session_cookie(user)) == (False, 4403), user.username
    # The approver's own cookie from another site's page: refused by the origin check.
    assert not async_to_sync(attempt)(session_cookie(world.approver), origin="https://evil.example")[0]
    assert not LogbookEntry.objects.filter(action="session.watch_started").exists()


def test_a_watcher_that_fell_behind_is_resynchronised(world: World) -> None:
    session = _session(_grant(world, world.web))
    cookie = session_cookie(world.auditor)

    async def scenario() -> Screen:
        feed, comm, screen = await watched(session, cookie)
        feed.output(b"one\r\n")
        await screen.until(lambda s: b"one" in s.output, timeout=5, what="live output")
        # More than the feed may hold while it publishes: dropped, and the sequence skips.
        feed.output(b"x" * (live_output.MAX_PENDING_BYTES + 1))
        feed.output(b"after the gap\r\n")
        await screen.until(
            lambda s: (
                [m for m in s.messages if m.get("type") == "reset" and m["resync"]] and b"after the gap" in s.output
            ),
            timeout=5,
            what="a resynchronised screen",
        )
        await feed.stop("done")
        await comm.disconnect()
        return screen

    screen = run(scenario)
    resets = [m for m in screen.messages if m.get("type") == "reset"]
    assert [m["resync"] for m in resets] == [False, True]
    # The screen after the resync is the feed's backlog: what it published, the last 64 KiB at most.
    assert len(screen.output) <= live_output.BACKLOG_BYTES + 100


def test_moderated_feed_waits_for_an_approver_pauses_when_the_last_leaves_and_a_dead_watcher_lapses(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "TTL_SECONDS", 3.0)
    session = _session(_grant(world, world.web))
    admin = make_user("root", is_superuser=True)
    auditor_cookie, approver_cookie = session_cookie(world.auditor), session_cookie(world.approver)
    told = Told()

    async def scenario() -> None:
        feed = told.feed(session, moderated=True)
        await feed.start()
        assert feed.state == live.WAITING and not feed.running
        # An auditor may watch, but does not let the session run.
        auditor = watcher(session.pk, auditor_cookie)
        assert (await auditor.connect(timeout=5))[0]
        await until(lambda: told.changes, timeout=5, what="the auditor counted")
        assert feed.state == live.WAITING
        approver = watcher(session.pk, approver_cookie)
        assert (await approver.connect(timeout=5))[0]
        await asyncio.wait_for(feed.wait_running(), 5)
        assert told.states == [live.RUNNING]
        await approver.disconnect()
        await until(lambda: feed.state == live.PAUSED, timeout=5, what="the pause")
        assert told.states == [live.RUNNING, live.PAUSED]
        # A watcher whose web process died says nothing more: it stops counting after the TTL.
        ghost = presence.Watcher(id="ghost", user_id=admin.pk, name="root", approver=True)
        await database_sync_to_async(presence.watcher_beat)(session_id=session.pk, watcher=ghost)
        await until(lambda: feed.running, timeout=5, what="the ghost counted")
        await until(lambda: feed.state == live.PAUSED, timeout=30, what="the ghost lapsing")
        await auditor.disconnect()
        await feed.stop("done")

    run(scenario)
    assert told.states == [live.RUNNING, live.PAUSED, live.RUNNING, live.PAUSED]


def test_ending_from_live_now_reaches_the_session_with_who_and_why(world: World) -> None:
    session = _session(_grant(world, world.web))
    told = Told()

    async def scenario() -> None:
        feed = told.feed(session)
        await feed.start()
        await database_sync_to_async(live_services.session_terminate)(
            session=session, user=world.approver, reason="Not in the change plan"
        )
        await until(lambda: told.closed, timeout=5, what="the close")
        await feed.stop(told.closed[0])

    run(scenario)
    assert told.closed == [f"{world.approver.label} ended this session: Not in the change plan"]
    entry = LogbookEntry.objects.get(action="session.terminated")
    assert entry.detail["reason"] == "Not in the change plan" and entry.actor_id == world.approver.pk


def test_a_watcher_who_may_no_longer_watch_is_closed(world: World) -> None:
    session = _session(_grant(world, world.web))
    cookie = session_cookie(world.approver)

    async def scenario() -> Screen:
        feed, _comm, screen = await watched(session, cookie)
        # No longer an approver of the account (a site admin changed the membership).
        await database_sync_to_async(
            lambda: world.approver.memberships.filter(account=world.prod).update(can_approve=False)
        )()
        await screen.until(lambda s: s.closed_code is not None, timeout=presence.BEAT_SECONDS + 5, what="the close")
        await feed.stop("done")
        return screen

    screen = run(scenario)
    assert screen.closed_code == 4403
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": watch.NO_LONGER_ALLOWED}


@pytest.mark.parametrize("change", ["auditor-removed", "superuser-removed", "deactivated"])
def test_a_watcher_whose_standing_an_admin_removed_is_closed(world: World, change: str) -> None:
    """The re-check reads the person again: not the one loaded when the socket opened."""
    session = _session(_grant(world, world.web))
    if change == "auditor-removed":
        who, field = world.auditor, "is_auditor"
    elif change == "superuser-removed":
        who, field = make_user("siteadmin", is_superuser=True, is_staff=True), "is_superuser"
    else:
        who, field = world.approver, "is_active"
    cookie = session_cookie(who)
    client, _ = superuser_client()
    url = f"/admin/accounts/user/{who.pk}/change/"

    def admin_changes_it() -> None:
        post_ok(client, url, form_data(client, url, **{field: None}))  # the box unticked
        who.refresh_from_db()
        assert not getattr(who, field)

    async def scenario() -> tuple[Screen, bool]:
        feed, _comm, screen = await watched(session, cookie)
        await database_sync_to_async(admin_changes_it)()
        await screen.until(lambda s: s.closed_code is not None, timeout=2 * presence.BEAT_SECONDS + 5, what="the close")
        feed.output(b"secret-output-after-the-change\r\n")
        await asyncio.sleep(0.5)
        await feed.stop("done")
        return screen, b"secret-output-after-the-change" in screen.output

    screen, saw_later_output = run(scenario)
    assert screen.closed_code == 4403 and not saw_later_output
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": watch.NO_LONGER_ALLOWED}


def test_hostile_names_reach_the_watched_person_as_one_plain_line(world: World) -> None:
    session = _session(_grant(world, world.web))
    world.approver.first_name, world.approver.last_name = "Eve\x1b[2J\x1b]0;x\x07", "\u202eLive\nNow"
    world.approver.save()
    cookie = session_cookie(world.approver)
    told = Told()

    async def scenario() -> None:
        feed = told.feed(session)
        await feed.start()
        comm = watcher(session.pk, cookie)
        assert (await comm.connect(timeout=5))[0]
        await until(lambda: told.changes, timeout=5, what="the watcher counted")
        await database_sync_to_async(live_services.session_terminate)(
            session=session, user=world.approver, reason="bye"
        )
        await until(lambda: told.closed, timeout=5, what="the close")
        await feed.stop(told.closed[0])
        await comm.disconnect()

    run(scenario)
    assert told.changes[0].joined == ("Eve [2J ]0;x Live Now",)
    assert told.closed == ["Eve [2J ]0;x Live Now ended this session: bye"]


def test_a_feed_on_its_owners_channel_answers_what_the_owner_passes_on(world: World) -> None:
    """The browser terminal's feed joins the session group with its consumer's channel and does not
    receive itself: the owner hands it the group's messages; a watcher still gets the screen so far."""
    session = _session(_grant(world, world.web))
    cookie = session_cookie(world.approver)
    told = Told()

    async def scenario() -> int:
        layer = channel_layers["default"]
        channel = await layer.new_channel()
        feed = LiveFeed(session_id=session.pk, cols=90, rows=30, on_close=told.close, channel=channel)
        await feed.start()
        tasks = len(feed._tasks)  # presence only: no receive loop of its own
        feed.output(b"on the owner's channel\r\n")
        await asyncio.sleep(0.2)
        comm = watcher(session.pk, cookie)
        assert (await comm.connect(timeout=5))[0]
        screen = Screen(comm)
        # What the owner's consumer does: receive on its channel, pass the feed its messages.
        for _ in range(3):
            message = await asyncio.wait_for(layer.receive(channel), 5)
            await feed.handle(message)
            if message["type"] == "live.resync":
                break
        await screen.until(lambda s: b"on the owner's channel" in s.output, timeout=5, what="the screen so far")
        await feed.handle({"type": "terminal.close", "reason": "Ended from Live now."})
        await feed.stop("Ended from Live now.")
        await feed.handle({"type": "terminal.close", "reason": "after the end"})  # ignored once stopped
        await comm.disconnect()
        return tasks

    assert run(scenario) == 1
    assert told.closed == ["Ended from Live now."]


class HeldLayer(InMemoryChannelLayer):
    """The in-memory layer, whose ``live.state`` sends wait until the test lets them through."""

    entered: asyncio.Event
    release: asyncio.Event

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if message.get("type") == "live.state":
            HeldLayer.entered.set()
            await HeldLayer.release.wait()
        await super().group_send(group, message)


def test_stopping_just_as_a_publish_completes_still_ends_the_feed(world: World, settings: Any) -> None:
    """On Python 3.11, asyncio.wait_for returns its result and drops a cancellation that arrives as the
    awaited call completes (gh-86296). The feed's presence loop publishes through wait_for; a stop timed
    like that must still end it, not leave the loop polling for ever and ``stop`` waiting on it."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.HeldLayer"}}
    session = _session(_grant(world, world.web))
    ghost = presence.Watcher(id="held", user_id=world.approver.pk, name="Approver", approver=True)

    async def scenario() -> bool:
        HeldLayer.entered, HeldLayer.release = asyncio.Event(), asyncio.Event()
        feed = LiveFeed(session_id=session.pk, cols=80, rows=24)
        await feed.start()
        await database_sync_to_async(presence.watcher_beat)(session_id=session.pk, watcher=ghost)
        await feed.handle({"type": "live.nudge"})  # the loop reads presence now: a watcher, published
        await asyncio.wait_for(HeldLayer.entered.wait(), 10)
        # In one turn of the loop: the publish completes, and the feed is stopped.
        HeldLayer.release.set()
        stopping = asyncio.ensure_future(feed.stop("bye"))
        done, _ = await asyncio.wait({stopping}, timeout=10)
        if not done:
            for task in feed._tasks:
                task.cancel()
            stopping.cancel()
            return False
        stopping.result()  # stop() itself raised nothing
        return all(task.done() for task in feed._tasks)

    try:
        assert run(scenario), "the feed did not stop"
    finally:
        presence.watcher_gone(session_id=session.pk, watcher=ghost)
