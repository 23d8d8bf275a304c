"""A browser terminal whose request's ending reaches the instance before the portal's message reaches
the terminal: the removal ends the Session Manager session, and the channel layer's
``terminal.close`` comes later (another web process, a slow Redis) or not at all. The terminal
closes with the request's own reason, not as a lost connection (seen in a fresh-clone CI run of the
several-hosts test, where the request was completed on the other web process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from accounts.models import AwsAccount
from fleet import fleet_for
from requests_app.models import AccessRequest, EndReason, Grant, RequestStatus
from terminal import services, session_checks
from tests.stack import Cloud
from tests.terminal.helpers import Screen, active_request, communicator, person_and_approver, session_cookie

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def test_a_terminal_whose_session_ends_with_its_request_says_the_requests_reason(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    # The terminal's own periodic checks (sign-in every 3 s, the end every 5 s) would also find the
    # request over; slowed down here, the instance side's end comes first, as it did in that run.
    monkeypatch.setattr(session_checks, "SESSION_CHECK_SECONDS", 600)
    monkeypatch.setattr(session_checks, "EXPIRY_CHECK_SECONDS", 600)
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
        session_id = await _ended_without_a_message(access_request.pk, grant)
        assert session_id
        await screen.until(lambda s: s.message("closed"), timeout=30, what="the terminal closed")
        await terminal.disconnect(timeout=15)
        return screen

    screen = async_to_sync(scenario)()
    closed = screen.message("closed")
    assert closed is not None
    assert closed["reason"] == "The access request was completed; this terminal is closed."


async def _ended_without_a_message(request_id: int, grant: Grant) -> str:
    """The request over (no ending signal, so no channel-layer message) and its session ended."""
    from channels.db import database_sync_to_async

    from terminal.models import TerminalSession

    def end() -> str:
        AccessRequest.objects.filter(pk=request_id).update(
            status=RequestStatus.COMPLETED, end_reason=EndReason.COMPLETED, ended_at=timezone.now()
        )
        record = TerminalSession.objects.filter(grant=grant).order_by("-pk").first()
        assert record is not None
        fleet_for(grant.request.account).terminate_session(record.ssm_session_id, grant.instance.region)
        return record.ssm_session_id

    return await database_sync_to_async(end)()
