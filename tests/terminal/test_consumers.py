"""The terminal WebSocket refuses everyone it should, against the real ASGI application."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from accounts.authentication import hash_token
from audit.models import LogbookEntry
from audit.throttle import window_start_for
from requests_app import services as request_services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from terminal import services
from terminal.models import TerminalTicket
from tests.conftest import World
from tests.terminal.helpers import Screen, communicator, session_cookie

# database_sync_to_async closes connections between calls: committed data, as in production.
pytestmark = pytest.mark.usefixtures("live_db")


def make_active_grant(world: World, instance: Instance | None = None) -> Grant:
    access_request = request_services.access_request_create(
        requester=world.requester, account=world.prod, instances=[instance or world.web], reason="terminal"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    return Grant.objects.select_related("request", "instance").get(request=access_request)


def connect(comm: Any) -> tuple[bool, int | None]:
    async def run() -> tuple[bool, int | None]:
        connected, code = await comm.connect(timeout=5)
        if connected:
            await comm.disconnect()
        return connected, code

    return async_to_sync(run)()


def refused(comm: Any) -> tuple[bool, int | None, str]:
    """Open, and read until closed: (accepted, close code, the ``closed`` reason shown, if any)."""

    async def run() -> tuple[bool, int | None, str]:
        connected, code = await comm.connect(timeout=5)
        if not connected:
            return False, code, ""
        screen = Screen(comm)
        await screen.until(lambda s: s.closed_code is not None, timeout=5, what="the close")
        closed = screen.message("closed")
        return True, screen.closed_code, closed["reason"] if closed else ""

    return async_to_sync(run)()


def test_no_session_is_refused(world: World) -> None:
    grant = make_active_grant(world)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    connected, code = connect(communicator(grant.pk, ticket))
    assert not connected and code == 4401
    # The ticket was not spent by the refused attempt.
    assert TerminalTicket.objects.get().used_at is None


def test_foreign_origin_is_refused(world: World) -> None:
    grant = make_active_grant(world)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    comm = communicator(grant.pk, ticket, cookie=session_cookie(world.requester), origin="https://evil.example")
    connected, _ = connect(comm)
    assert not connected
    assert TerminalTicket.objects.get().used_at is None


def test_missing_or_unknown_ticket_is_refused(world: World) -> None:
    # On a grant the person may see: the socket opens only to say why, then closes.
    grant = make_active_grant(world)
    cookie = session_cookie(world.requester)
    accepted, code, reason = refused(communicator(grant.pk, cookie=cookie))
    assert (accepted, code) == (True, 4403) and "carries no ticket" in reason
    accepted, code, reason = refused(communicator(grant.pk, "made-up", cookie=cookie))
    assert (accepted, code) == (True, 4403) and "no longer valid" in reason


def test_replayed_ticket_is_refused(world: World) -> None:
    # The request is not active: the first connection is accepted, told why and closed.
    grant = make_active_grant(world)
    AccessRequest.objects.filter(pk=grant.request_id).update(status=RequestStatus.COMPLETED)
    cookie = session_cookie(world.requester)
    ticket = services.ticket_issue(user=world.requester, grant=grant)

    async def first() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        connected, _ = await comm.connect(timeout=5)
        assert connected
        screen = Screen(comm)
        await screen.until(lambda s: s.closed_code is not None or s.message("closed"), timeout=5, what="closed")
        await comm.disconnect()
        return screen

    screen = async_to_sync(first)()
    closed = screen.message("closed")
    assert closed is not None and "not active" in closed["reason"]
    accepted, code, reason = refused(communicator(grant.pk, ticket, cookie=cookie))
    assert (accepted, code) == (True, 4403) and "opened its terminal already" in reason


def test_expired_ticket_is_refused(world: World) -> None:
    grant = make_active_grant(world)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    TerminalTicket.objects.update(expires_at=timezone.now())
    accepted, code, reason = refused(communicator(grant.pk, ticket, cookie=session_cookie(world.requester)))
    assert (accepted, code) == (True, 4403) and "expired" in reason


def test_another_persons_grant_is_refused(world: World) -> None:
    grant = make_active_grant(world)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    # Someone else's session with the requester's ticket (a grant they may not see: no word) ...
    assert connect(communicator(grant.pk, ticket, cookie=session_cookie(world.member))) == (False, 4403)
    # ... or the ticket on another grant: both refused, and the ticket is still the requester's.
    other = make_active_grant(world, world.db)
    accepted, code, reason = refused(communicator(other.pk, ticket, cookie=session_cookie(world.requester)))
    assert (accepted, code) == (True, 4403) and "no longer valid" in reason
    assert TerminalTicket.objects.get().used_at is None


def test_a_persons_refused_ticket_says_why_on_the_page_and_in_the_logbook(world: World, time_machine: Any) -> None:
    # At the start of a refusal window (audit.refusals), so that the repeat below falls in the same one.
    window = settings.PASSPORT_REFUSAL_WINDOW_SECONDS
    time_machine.move_to(window_start_for(timezone.now(), window) + timedelta(seconds=window + 1), tick=True)
    # Six pages of one grant loaded at once (tabs restored): the first page's ticket is pruned
    # before its WebSocket arrives. Its page says why (not a bare "Disconnected") and the Logbook has it.
    grant = make_active_grant(world)
    cookie = session_cookie(world.requester)
    tokens = [services.ticket_issue(user=world.requester, grant=grant) for _ in range(6)]
    accepted, code, reason = refused(communicator(grant.pk, tokens[0], cookie=cookie))
    assert (accepted, code) == (True, 4403)
    assert "newer terminal pages" in reason and "Reload the page" in reason
    entry = LogbookEntry.objects.get(action="terminal.refused")
    assert entry.actor_id == world.requester.pk and entry.request_id == grant.request_id
    assert entry.detail["reason"] == "ticket not valid" and entry.detail["client"] == "browser"

    TerminalTicket.objects.filter(token_hash=hash_token(tokens[1])).update(expires_at=timezone.now())
    accepted, code, reason = refused(communicator(grant.pk, tokens[1], cookie=cookie))
    assert (accepted, code) == (True, 4403) and "expired" in reason
    TerminalTicket.objects.filter(token_hash=hash_token(tokens[2])).update(used_at=timezone.now())
    accepted, code, reason = refused(communicator(grant.pk, tokens[2], cookie=cookie))
    assert (accepted, code) == (True, 4403) and "opened its terminal already" in reason
    assert sorted(LogbookEntry.objects.filter(action="terminal.refused").values_list("detail__reason", flat=True)) == [
        "ticket expired",
        "ticket not valid",
        "ticket used",
    ]
    # The same refusal again is counted, not written again (audit.refusals).
    assert refused(communicator(grant.pk, tokens[2], cookie=cookie))[:2] == (True, 4403)
    assert LogbookEntry.objects.filter(action="terminal.refused").count() == 3


def test_a_ticket_for_a_grant_the_person_may_not_see_is_refused_unexplained(world: World) -> None:
    # Nothing of theirs to say anything about, nor to write on: refused before the socket opens.
    grant = make_active_grant(world)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    assert connect(communicator(grant.pk, ticket, cookie=session_cookie(world.outsider))) == (False, 4403)
    assert connect(communicator(grant.pk + 1000, ticket, cookie=session_cookie(world.requester))) == (False, 4403)
    assert not LogbookEntry.objects.filter(action="terminal.refused").exists()
    assert TerminalTicket.objects.get().used_at is None
