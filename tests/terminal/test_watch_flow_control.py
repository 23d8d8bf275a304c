"""The watcher's flow control (terminal.watch): a page that stops reading, or never acknowledges
what it read, costs the web process a bounded amount, and is resynchronised or closed.

The first test: real daphne serving the portal, real Redis channel layer, a raw socket that never
reads; this test process plays the session's live feed (answers the snapshot, publishes
live.output to the watch group). Before the fix daphne grew by ~170 MiB here."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django.db import connection

from terminal import presence, services, watch
from terminal.live import LiveFeed
from tests.conftest import World
from tests.stack import start_daphne, stop_process
from tests.terminal.helpers import Screen, session_cookie
from tests.terminal.test_live_feed import fresh_channel_layer, run, watched  # noqa: F401  (a fixture)
from tests.terminal.test_live_permissions import _grant, _session

pytestmark = pytest.mark.usefixtures("live_db")

CHUNK = 256 * 1024
MESSAGES = 600  # 150 MiB of output in all


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_watcher_that_never_reads_costs_daphne_a_bounded_amount(world: World, tmp_path: Path) -> None:
    channel_layers.backends.clear()
    session = _session(_grant(world, world.web))
    cookie = session_cookie(world.approver)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PASSPORT_ENV": "test",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
        "PASSPORT_VAR_DIR": str(tmp_path / "var"),
    }
    daphne, port = start_daphne(env, tmp_path / "daphne.log")
    try:
        # The watcher's browser: a WebSocket handshake, then it reads nothing at all.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            (
                f"GET /ws/watch/{session.pk}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head

        async def play_the_session() -> tuple[float, float]:
            layer = get_channel_layer()
            me = await layer.new_channel()
            await layer.group_add(services.session_group(session.pk), me)
            while True:  # the watcher asks for its first screen
                message = await asyncio.wait_for(layer.receive(me), 20)
                if message["type"] == "live.resync":
                    break
            await layer.send(
                message["reply_to"],
                {"type": "live.snapshot", "seq": 0, "data": b"", "cols": 80, "rows": 24, "state": "running",
                 "watching": []},
            )  # fmt: skip
            await asyncio.sleep(1)
            before = _rss_mib(daphne.pid)
            payload = b"A" * CHUNK
            for seq in range(1, MESSAGES + 1):
                await layer.group_send(
                    services.watch_group(session.pk), {"type": "live.output", "seq": seq, "events": [["o", payload]]}
                )
                await asyncio.sleep(0.01)
            await asyncio.sleep(3)
            return before, _rss_mib(daphne.pid)

        before, after = async_to_sync(play_the_session)()
        print(f"daphne RSS: {before:.0f} MiB before, {after:.0f} MiB after {MESSAGES * CHUNK >> 20} MiB of output")
        # A watcher that reads nothing should cost the web process a bounded amount (a few MiB).
        assert after - before < 32, f"daphne grew by {after - before:.0f} MiB for one stalled watcher"
    finally:
        stop_process(daphne)


# --- the flow control itself, through the real ASGI application and channel layer --------------
PIECE = 64 * 1024


async def _drain(screen: Screen, *, quiet: float = 1.0) -> None:
    """Everything the socket has for the page until it stays quiet (never times out a receive:
    that would cancel the application)."""
    while not await screen.comm.receive_nothing(timeout=quiet):
        event = await screen.comm.receive_output(timeout=1)
        if event["type"] == "websocket.close":
            screen.closed_code = event.get("code", 1000)
            return
        if event.get("bytes") is not None:
            screen.output += event["bytes"]
        elif event.get("text") is not None:
            screen.messages.append(json.loads(event["text"]))


async def _print(feed: LiveFeed, total: int, byte: bytes) -> None:
    """``total`` bytes from the session, paced so the feed publishes all of it (no gap)."""
    for _ in range(total // PIECE):
        feed.output(byte * PIECE)
        await asyncio.sleep(0.08)


def _ack(mark: str) -> str:
    return json.dumps({"v": 1, "type": "ack", "id": mark})


def test_a_page_that_does_not_acknowledge_gets_at_most_the_limit_then_resyncs_once_it_does(world: World) -> None:
    session = _session(_grant(world, world.web))
    cookie = session_cookie(world.auditor)

    async def scenario() -> tuple[Screen, int, int, int]:
        feed, comm, screen = await watched(session, cookie)
        await _print(feed, 3 * watch.MAX_UNACKED, b"A")
        await _drain(screen)
        stalled_at = len(screen.output)
        marks = [m["id"] for m in screen.messages if m.get("type") == "mark"]
        # Acknowledgements the server never asked for, or not quite one: ignored, output stays held.
        real = marks[-1]
        for forged in (
            _ack("not-a-mark"),
            json.dumps({"v": 1, "type": "ack", "id": real, "bytes": 1}),
            json.dumps({"v": True, "type": "ack", "id": real}),
            json.dumps({"v": 1, "type": "ack", "id": [real]}),
            json.dumps({"v": 1, "type": "input", "id": real}),
            _ack(real) + " " * watch.MAX_ACK_CHARS,
            "[" * 100_000,
        ):
            await comm.send_to(text_data=forged)
        await comm.send_to(bytes_data=_ack(real).encode())
        await _print(feed, 4 * PIECE, b"B")
        await _drain(screen)
        after_forged = len(screen.output)
        # The page caught up: the screen again from the backlog, then live output.
        await comm.send_to(text_data=_ack(real))
        await screen.until(lambda s: [m for m in s.messages if m.get("resync")], timeout=5, what="the resync")
        feed.output(b"caught up\r\n")
        await screen.until(lambda s: b"caught up" in s.output, timeout=5, what="live output again")
        await feed.stop("done")
        await comm.disconnect()
        return screen, stalled_at, after_forged, len(marks)

    screen, stalled_at, after_forged, marks = run(scenario)
    assert stalled_at <= watch.MAX_UNACKED and stalled_at >= watch.MAX_UNACKED - 2 * PIECE
    assert marks >= watch.MAX_UNACKED // watch.ACK_EVERY - 2
    assert after_forged == stalled_at
    resets = [m for m in screen.messages if m.get("type") == "reset"]
    assert [m["resync"] for m in resets] == [False, True]


def test_a_page_that_stays_behind_is_closed_with_a_reason(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "STALLED_SECONDS", 1.0)
    session = _session(_grant(world, world.web))
    cookie = session_cookie(world.approver)

    async def scenario() -> Screen:
        feed, _comm, screen = await watched(session, cookie)
        await _print(feed, 2 * watch.MAX_UNACKED, b"A")
        await screen.until(lambda s: s.closed_code is not None, timeout=3 * presence.BEAT_SECONDS, what="the close")
        await feed.stop("done")
        return screen

    screen = run(scenario)
    assert screen.closed_code == watch.CLOSE_NOT_READING
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": watch.NOT_READING}


def test_a_watcher_whose_standing_cannot_be_checked_is_closed(world: World) -> None:
    """The database failing under the beat (here: the sessions table gone) must not leave a watcher
    receiving output on a standing nobody checks; here the approver's approving was removed first."""
    session = _session(_grant(world, world.web))
    cookie = session_cookie(world.approver)

    def break_the_database(away: bool) -> None:
        names = ("django_session", "django_session_away")
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE {} RENAME TO {}".format(*(names if away else names[::-1])))

    async def scenario() -> Screen:
        feed, _comm, screen = await watched(session, cookie)
        await database_sync_to_async(
            lambda: world.approver.memberships.filter(account=world.prod).update(can_approve=False)
        )()
        await database_sync_to_async(break_the_database)(True)
        try:
            feed.output(b"before\r\n")
            await screen.until(
                lambda s: s.closed_code is not None,
                timeout=(watch.MAX_FAILED_BEATS + 1) * presence.BEAT_SECONDS + 3,
                what="the close",
            )
        finally:
            await database_sync_to_async(break_the_database)(False)
        await feed.stop("done")
        return screen

    screen = run(scenario)
    assert screen.closed_code == watch.CLOSE_UNAVAILABLE
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": watch.NOT_CHECKED}
