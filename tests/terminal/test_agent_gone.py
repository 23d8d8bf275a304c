"""The browser terminal to an instance whose SSM agent is gone (v1.2.0: "Fixed Passport crash when
tunneling if the SSM agent was missing on the target instance"): the inventory still says Online,
devcloud's Systems Manager answers StartSession with TargetNotConnected, as AWS does. The page is
told why and the socket closed; nothing is left open or on record as started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from audit.models import LogbookEntry
from terminal import frames, services
from terminal.models import SessionSlot, TerminalSession
from tests.requests_app.test_forward_ports import make_scene
from tests.stack import Cloud, agent_gone
from tests.terminal.helpers import Screen, communicator, session_cookie

# The consumer's database work runs in other threads: committed data, as in production.
pytestmark = pytest.mark.usefixtures("live_db")


def test_a_terminal_to_an_instance_whose_agent_is_gone_says_why_and_leaves_nothing(
    aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    scene = make_scene(aws, settings)
    grant = scene.request.grants.select_related("instance", "request").get(instance=scene.web)
    cookie = session_cookie(scene.alice)
    ticket = services.ticket_issue(user=scene.alice, grant=grant)

    async def attempt() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        connected, _ = await comm.connect(timeout=10)
        assert connected
        screen = Screen(comm)
        await screen.until(lambda s: s.message("closed"), timeout=30, what="the refusal")
        await screen.until(lambda s: s.closed_code is not None, timeout=10, what="the close")
        await comm.disconnect(timeout=15)
        return screen

    with agent_gone(aws, scene.prod.account_id, "web-1"):
        screen = async_to_sync(attempt)()

    closed = screen.message("closed")
    assert closed is not None and screen.message("ready") is None
    assert closed["reason"].startswith("The session could not start: Systems Manager could not start a session")
    assert "not connected" in closed["reason"]
    assert screen.closed_code == frames.CLOSE_ENDED
    # Nothing started, nothing left: no Session Manager session, no terminal row, its place under
    # the session cap given back, nothing in the Logbook as started.
    assert aws.devcloud.runtime.sessions.sessions(scene.prod.account_id, "us-east-1", active=True) == []
    assert not TerminalSession.objects.exists()
    assert not SessionSlot.objects.exists()
    assert not LogbookEntry.objects.filter(action__in=["session.started", "terminal.started"]).exists()
