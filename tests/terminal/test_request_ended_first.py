"""A browser terminal whose request's ending reaches the instance before the portal's message reaches
the terminal: the removal ends the Session Manager session, and the channel layer's
``terminal.close`` comes later (another web process, a slow Redis) or not at all. The terminal
closes with the request's own reason, not as a lost connection (seen in a fresh-clone CI run of the
several-hosts test, where the request was completed on the other web process).

The order is forced: the request is completed only once the terminal's first look at it (right
after ``ready``, which sends ``ends``) is behind it, its periodic checks are slowed down, and the
``terminal.close`` the completion sends is withheld from the terminal's channel at the channel
layer. What ends the terminal is then the worker's removal terminating its Session Manager session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from accounts.models import AwsAccount, User
from requests_app import services as request_services
from requests_app.models import AccessRequest, Grant
from terminal import services, session_checks
from tests.stack import Cloud
from tests.terminal.helpers import Screen, active_request, communicator, person_and_approver, session_cookie

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]

COMPLETED = "The access request was completed; this terminal is closed."


def test_a_terminal_whose_session_ends_with_its_request_says_the_requests_reason(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    # The terminal's own periodic checks (sign-in every 3 s, the end every 5 s) would also find the
    # request over; slowed down here, the instance side's end comes first, as it did in that run.
    monkeypatch.setattr(session_checks, "SESSION_CHECK_SECONDS", 600)
    monkeypatch.setattr(session_checks, "EXPIRY_CHECK_SECONDS", 600)
    withheld = _withhold_terminal_close(monkeypatch)
    alice, carol = person_and_approver(prod)
    access_request = active_request(prod, alice, carol)
    grant = Grant.objects.select_related("instance", "request__account").get(request=access_request)
    ticket = services.ticket_issue(user=alice, grant=grant)
    cookie = session_cookie(alice)

    async def scenario() -> Screen:
        terminal = communicator(grant.pk, ticket, cookie=cookie)
        assert (await terminal.connect(timeout=10))[0]
        screen = Screen(terminal)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        # ``ends`` comes from the check made once the shell is ready, after it found the request
        # active: from here only the periodic checks (slowed down) would read the request again.
        await screen.until(lambda s: s.message("ends"), timeout=30, what="the request's end time")
        await _complete(access_request, alice)
        await screen.until(lambda s: s.message("closed"), timeout=60, what="the terminal closed")
        await terminal.disconnect(timeout=15)
        return screen

    screen = async_to_sync(scenario)()
    # The completion's message did reach the terminal's channel, and was kept from it.
    assert [message.get("reason") for message in withheld] == [COMPLETED]
    closed = screen.message("closed")
    assert closed is not None
    assert closed["reason"] == COMPLETED


def _withhold_terminal_close(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The channel layer, as consumers receive from it, without any ``terminal.close``: as if the
    message were still on its way. Returns the list of those it kept back."""
    layer = get_channel_layer()
    assert layer is not None
    receive = layer.receive
    withheld: list[dict[str, Any]] = []

    async def receive_without_close(channel: str) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = await receive(channel)
            if message.get("type") != "terminal.close":
                return message
            withheld.append(message)

    monkeypatch.setattr(layer, "receive", receive_without_close)
    return withheld


async def _complete(access_request: AccessRequest, requester: User) -> None:
    """The requester completes the request, as the portal's Complete button does: the request is
    over at once, and the worker removes its user and terminates its Session Manager sessions."""

    def complete() -> None:
        request_services.access_request_complete(access_request=access_request, actor=requester)

    await database_sync_to_async(complete)()
