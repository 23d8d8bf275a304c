"""A terminal whose channel layer (Redis) fails closes its session and cleans up: the SSM session
ended, the recording sealed, ``terminal.ended`` with the reason; never an orphaned shell."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal import services
from terminal.consumers import CLOSE_UNAVAILABLE
from terminal.models import TerminalSession
from terminal.recorder import recording_kept
from tests.conftest import World
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import Screen, communicator, ready_grant, session_cookie
from tests.terminal.test_consumers import make_active_grant

# Set by a test: the layer's next group_add fails / its receive fails from now on.
FAIL_GROUP_ADD = threading.Event()
FAIL_RECEIVE = threading.Event()


class FailingLayer(InMemoryChannelLayer):
    """The in-memory layer, failing the way channels_redis does when Redis goes away."""

    async def group_add(self, group: str, channel: str) -> None:
        if FAIL_GROUP_ADD.is_set():
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        await super().group_add(group, channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        while not FAIL_RECEIVE.is_set():
            await asyncio.sleep(0.05)
        raise RedisConnectionError("Connection closed by server.")


@pytest.fixture
def failing_layer(settings: Any) -> Any:
    FAIL_GROUP_ADD.clear()
    FAIL_RECEIVE.clear()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.FailingLayer"}}
    yield
    FAIL_GROUP_ADD.clear()
    FAIL_RECEIVE.clear()


@pytest.mark.usefixtures("live_db", "failing_layer")
def test_a_layer_failing_at_connect_refuses_the_terminal_before_anything_starts(world: World) -> None:
    FAIL_GROUP_ADD.set()
    grant = make_active_grant(world)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    cookie = session_cookie(world.requester)

    async def run() -> tuple[bool, int | None]:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        connected, code = await comm.connect(timeout=5)
        await comm.wait(timeout=5)  # the application finished: nothing left running
        return connected, code

    assert async_to_sync(run)() == (False, CLOSE_UNAVAILABLE)
    assert not TerminalSession.objects.filter(grant=grant).exists()


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker", "failing_layer")
def test_a_layer_failing_under_an_open_terminal_ends_and_seals_it(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, _approver, access_request, grant = ready_grant(prod)
    ticket = services.ticket_issue(user=alice, grant=grant)
    cookie = session_cookie(alice)

    async def session() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        assert (await comm.connect(timeout=10))[0]
        screen = Screen(comm)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        await comm.send_to(bytes_data=b"echo before-the-outage-$((6*7))\r")
        await screen.until(lambda s: b"before-the-outage-42" in s.output, timeout=20, what="the echo")
        FAIL_RECEIVE.set()  # Redis goes away under the open terminal
        await screen.until(lambda s: s.closed_code is not None, timeout=15, what="the close")
        await comm.wait(timeout=15)
        return screen

    screen = async_to_sync(session)()
    assert screen.closed_code == CLOSE_UNAVAILABLE
    closed = screen.message("closed")
    assert closed is not None and "message channel" in closed["reason"]

    terminal_session = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="the session record"
    )
    assert "message channel" in terminal_session.end_reason
    assert recording_kept(terminal_session).sha256 == terminal_session.recording_sha256
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert "message channel" in str(ended.detail)
    ssm_session = aws.devcloud.runtime.sessions.get(terminal_session.ssm_session_id)
    assert ssm_session is not None
    wait_for(lambda: not ssm_session.active, timeout=10, what="the SSM session to end")
