"""A change of an account's forwarding ports or destinations, by any save, tells its active
requests' groups after commit (``cli.forwarding_changed``), for their CLI proxy connections to close
the forwards no longer allowed (tests/terminal/proxy/test_forwards_withdrawn.py). A browser terminal
on the same group has no forwards: it hears the message and carries on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from accounts.models import AwsAccount
from requests_app import services as request_services
from requests_app.models import AccessRequest, RequestStatus
from terminal import services
from terminal.models import TerminalSession
from tests.conftest import World
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import Screen, communicator, ready_grant, session_cookie
from tests.terminal.test_consumers import make_active_grant

CHANGED = {"type": "cli.forwarding_changed"}
PROBE = {"type": "probe"}


@pytest.mark.django_db
def test_a_forwarding_change_tells_the_accounts_active_requests_only(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    layer = get_channel_layer()
    active = make_active_grant(world).request
    pending = request_services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.db], reason="not yet approved"
    )
    elsewhere = request_services.access_request_create(
        requester=world.requester, account=world.staging, instances=[world.stage_web], reason="another account"
    )
    AccessRequest.objects.filter(pk=elsewhere.pk).update(status=RequestStatus.ACTIVE)
    groups = [services.request_group(pk) for pk in (active.pk, pending.pk, elsewhere.pk)]

    async def listen() -> list[str]:
        channels = []
        for group in groups:
            channels.append(channel := await layer.new_channel())
            await layer.group_add(group, channel)
        return channels

    async def heard(channels: list[str]) -> list[list[dict[str, Any]]]:
        """What each group heard before a probe sent now."""
        for group in groups:
            await layer.group_send(group, PROBE)
        found: list[list[dict[str, Any]]] = []
        for channel in channels:
            found.append([])
            while (message := await asyncio.wait_for(layer.receive(channel), 5)) != PROBE:
                found[-1].append(message)
        return found

    def save(**fields: Any) -> list[dict[str, Any]]:
        account = AwsAccount.objects.get(pk=world.prod.pk)
        for name, value in fields.items():
            setattr(account, name, value)
        with django_capture_on_commit_callbacks(execute=True):
            account.save()
        return async_to_sync(heard)(channels)

    channels = async_to_sync(listen)()
    try:
        assert save(extra_forward_ports=[5432]) == [[CHANGED], [], []]
        assert save(forward_destinations=["10.0.12.7:5432"]) == [[CHANGED], [], []]
        # Saved unchanged, or another field changed: nothing to re-read.
        assert save(extra_forward_ports=[5432], forward_destinations=["10.0.12.7:5432"]) == [[], [], []]
        assert save(name="Acme Production (renamed)") == [[], [], []]
        assert save(forward_destinations=[]) == [[CHANGED], [], []]
    finally:

        async def leave() -> None:
            for group, channel in zip(groups, channels, strict=True):
                await layer.group_discard(group, channel)

        async_to_sync(leave)()


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_an_open_browser_terminal_carries_on_through_a_forwarding_change(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, _approver, _access_request, grant = ready_grant(prod)
    ticket, cookie = services.ticket_issue(user=alice, grant=grant), session_cookie(alice)

    def narrow() -> None:
        account = AwsAccount.objects.get(pk=prod.pk)
        account.extra_forward_ports = [5432]
        account.save()  # committed: the request's group hears cli.forwarding_changed

    async def session() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        assert (await comm.connect(timeout=10))[0]
        screen = Screen(comm)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        await database_sync_to_async(narrow)()
        await asyncio.sleep(2)
        await comm.send_to(bytes_data=b"echo after-$((6*7))\r")
        await screen.until(lambda s: b"after-42\r\n" in s.output, timeout=20, what="the shell after the change")
        await comm.disconnect(code=1000, timeout=15)
        return screen

    screen = async_to_sync(session)()
    assert screen.closed_code is None and screen.message("closed") is None
    ended = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="the session record"
    )
    assert ended.end_reason == "The browser disconnected."
