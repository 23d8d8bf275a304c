"""Signing out closes the person's terminals: at once through the channel layer on sign-out, and
through the consumer's session check when the browser session disappears any other way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal import services
from terminal.models import TerminalSession
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.conftest import World
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import Screen, communicator, ready_grant


@pytest.mark.django_db
def test_sign_out_tells_that_persons_group_only(world: World, django_capture_on_commit_callbacks: Any) -> None:
    layer = get_channel_layer()

    async def listen(user_id: int) -> str:
        channel = await layer.new_channel()
        await layer.group_add(services.user_group(user_id), channel)
        return channel

    mine = async_to_sync(listen)(world.requester.pk)
    theirs = async_to_sync(listen)(world.member.pk)
    client = Client()
    client.force_login(world.requester)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("account_logout")).status_code == 302

    async def received() -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            message = await asyncio.wait_for(layer.receive(mine), 5)
            # Had the sign-out reached the other person, it would be ahead of this probe.
            await layer.group_send(services.user_group(world.member.pk), {"type": "probe"})
            first_for_them = await asyncio.wait_for(layer.receive(theirs), 5)
            return message, first_for_them
        finally:
            await layer.group_discard(services.user_group(world.requester.pk), mine)
            await layer.group_discard(services.user_group(world.member.pk), theirs)

    message, first_for_them = async_to_sync(received)()
    assert message == {"type": "terminal.close", "reason": "You signed out."}
    assert first_for_them == {"type": "probe"}


def _signed_in_client(user: Any) -> tuple[Client, str]:
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}"


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
@pytest.mark.parametrize("how", ["sign-out", "session-removed"])
def test_open_terminal_closes_when_its_person_signs_out(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Any, how: str
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, _approver, access_request, grant = ready_grant(prod)
    client, cookie = _signed_in_client(alice)
    session_key = client.cookies["sessionid"].value
    ticket = services.ticket_issue(user=alice, grant=grant)

    def sign_out() -> None:
        if how == "sign-out":
            assert client.post(reverse("account_logout")).status_code == 302
        else:  # e.g. an admin clearing sessions, or the session expiring: no signal at all
            Session.objects.filter(session_key=session_key).delete()

    async def session() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        assert (await comm.connect(timeout=10))[0]
        screen = Screen(comm)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        await comm.send_to(bytes_data=b"echo before-sign-out\r")
        await screen.until(lambda s: b"before-sign-out\r\n" in s.output, timeout=20, what="the echo")
        await database_sync_to_async(sign_out)()
        await screen.until(lambda s: s.closed_code is not None, timeout=15, what="the close after signing out")
        await comm.disconnect(code=4000, timeout=15)
        return screen

    screen = async_to_sync(session)()
    closed = screen.message("closed")
    assert closed == {"v": 1, "type": "closed", "reason": "You signed out."}
    assert screen.closed_code == 4000
    terminal_session = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="the session record"
    )
    assert terminal_session.end_reason == "You signed out."
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert ended.detail["reason"] == "You signed out."
    assert "before-sign-out" in terminal_session.transcript
    assert terminal_session.transcript_index["commands"][0][1] == "echo before-sign-out"


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_open_terminal_closes_when_an_admin_deactivates_its_person(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, _approver, access_request, grant = ready_grant(prod)
    _client, cookie = _signed_in_client(alice)
    ticket = services.ticket_issue(user=alice, grant=grant)
    admin, _ = superuser_client()
    url = f"/admin/accounts/user/{alice.pk}/change/"

    def deactivate() -> None:
        post_ok(admin, url, form_data(admin, url, is_active=None))  # untick "Active"

    async def session() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        assert (await comm.connect(timeout=10))[0]
        screen = Screen(comm)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        await database_sync_to_async(deactivate)()
        await screen.until(lambda s: s.closed_code is not None, timeout=15, what="the close after deactivation")
        await comm.disconnect(code=4000, timeout=15)
        return screen

    screen = async_to_sync(session)()
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": services.DEACTIVATED_MESSAGE}
    access_request.refresh_from_db()
    assert access_request.end_reason == "revoked"
    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=access_request.pk)
    assert revoked.detail["via"] == "deactivated"
    terminal_session = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="the session record"
    )
    assert terminal_session.end_reason == services.DEACTIVATED_MESSAGE
