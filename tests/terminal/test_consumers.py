"""The terminal WebSocket refuses everyone it should, against the real ASGI application."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

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
    grant = make_active_grant(world)
    cookie = session_cookie(world.requester)
    assert connect(communicator(grant.pk, cookie=cookie)) == (False, 4403)
    assert connect(communicator(grant.pk, "made-up", cookie=cookie)) == (False, 4403)


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
    assert connect(communicator(grant.pk, ticket, cookie=cookie)) == (False, 4403)


def test_expired_ticket_is_refused(world: World) -> None:
    grant = make_active_grant(world)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    TerminalTicket.objects.update(expires_at=timezone.now())
    assert connect(communicator(grant.pk, ticket, cookie=session_cookie(world.requester))) == (False, 4403)


def test_another_persons_grant_is_refused(world: World) -> None:
    grant = make_active_grant(world)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    # Someone else's session with the requester's ticket ...
    assert connect(communicator(grant.pk, ticket, cookie=session_cookie(world.member))) == (False, 4403)
    # ... or the ticket on another grant: both refused, and the ticket is still the requester's.
    other = make_active_grant(world, world.db)
    assert connect(communicator(other.pk, ticket, cookie=session_cookie(world.requester))) == (False, 4403)
    assert TerminalTicket.objects.get().used_at is None
