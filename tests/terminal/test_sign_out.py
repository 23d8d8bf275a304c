"""Signing out closes the person's terminals: at once through the channel layer on sign-out (and on a
password change, which signs out every other session of theirs), and through the consumer's session
check when the browser session disappears, or stops counting, any other way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from accounts.models import AwsAccount, User
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


async def _listen(user_id: int) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(services.user_group(user_id), channel)
    return channel


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["saved", "updated behind the signals"])
def test_a_session_is_no_longer_signed_in_once_its_persons_password_changed(world: World, how: str) -> None:
    """Django refuses such a session at its next page (its password hash no longer matches); an open
    terminal or a watcher, which loads no page, asks this every few seconds and must see it too."""
    alice = world.requester
    intruder = Client()
    intruder.force_login(alice)
    key = intruder.session.session_key
    assert services.terminal_session_signed_in(session_key=key, user_id=alice.pk)

    if how == "saved":  # the page, a reset, the admin's form, changepassword
        alice.set_password("a-brand-new-password-9!")
        alice.save()
    else:  # a write no receiver hears (raw SQL, the plain base manager)
        User._base_manager.filter(pk=alice.pk).update(password=make_password("a-brand-new-password-9!"))

    assert not services.terminal_session_signed_in(session_key=key, user_id=alice.pk)
    assert intruder.get(reverse("requests:list")).status_code == 302  # as Django itself: signed out


@pytest.mark.django_db
def test_a_session_signed_under_a_fallback_secret_key_is_still_signed_in(world: World, settings: Any) -> None:
    """A SECRET_KEY rotation with the old key in SECRET_KEY_FALLBACKS keeps sessions signed in, as
    Django's own check does; without it they are signed out."""
    old = settings.SECRET_KEY
    client = Client()
    client.force_login(world.requester)
    key = client.session.session_key
    settings.SECRET_KEY = old + "-rotated"
    settings.SECRET_KEY_FALLBACKS = [old]
    assert services.terminal_session_signed_in(session_key=key, user_id=world.requester.pk)
    settings.SECRET_KEY_FALLBACKS = []
    assert not services.terminal_session_signed_in(session_key=key, user_id=world.requester.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("disabled", [False, True], ids=["new-password", "password-sign-in-disabled"])
def test_a_password_change_tells_that_persons_terminals_at_once(
    world: World, django_capture_on_commit_callbacks: Any, disabled: bool
) -> None:
    """Not only at their next sign-in check: the change's own commit closes them, saying why. So does
    the admin's "Disable password-based authentication" (an unusable password)."""
    layer = get_channel_layer()
    mine = async_to_sync(_listen)(world.requester.pk)

    async def received() -> dict[str, Any]:
        try:
            return dict(await asyncio.wait_for(layer.receive(mine), 5))
        finally:
            await layer.group_discard(services.user_group(world.requester.pk), mine)

    with django_capture_on_commit_callbacks(execute=True):
        world.requester.save()  # no password change (a hasher upgrade, a name): nothing to close
        if disabled:
            world.requester.set_unusable_password()
        else:
            world.requester.set_password("a-brand-new-password-9!")
        world.requester.save()
    message = async_to_sync(received)()
    assert message == {"type": "terminal.close", "reason": services.CREDENTIALS_CHANGED_MESSAGE}


def _signed_in_client(user: Any) -> tuple[Client, str]:
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}"


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("sign-out", services.SIGNED_OUT_MESSAGE),
        ("session-removed", services.SIGNED_OUT_MESSAGE),
        ("password-changed", services.CREDENTIALS_CHANGED_MESSAGE),
        ("password-replaced-behind-the-signals", services.SIGNED_OUT_MESSAGE),
    ],
)
def test_open_terminal_closes_when_its_person_signs_out(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Any, how: str, reason: str
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, _approver, access_request, grant = ready_grant(prod)
    client, cookie = _signed_in_client(alice)
    session_key = client.cookies["sessionid"].value
    ticket = services.ticket_issue(user=alice, grant=grant)

    def sign_out() -> None:
        if how == "sign-out":
            assert client.post(reverse("account_logout")).status_code == 302
        elif how == "session-removed":  # e.g. an admin clearing sessions, or the session expiring: no signal
            Session.objects.filter(session_key=session_key).delete()
        elif how == "password-changed":  # elsewhere (a reset, the admin's form): this session no longer counts
            alice.set_password("a-brand-new-password-9!")
            alice.save()
        else:  # no signal (raw SQL, the plain base manager): the terminal's own sign-in check sees the stale hash
            User._base_manager.filter(pk=alice.pk).update(password=make_password("a-brand-new-password-9!"))

    async def session() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        assert (await comm.connect(timeout=10))[0]
        screen = Screen(comm)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        await comm.send_to(bytes_data=b"echo before-sign-out-$((6*7))\r")
        await screen.until(lambda s: b"before-sign-out-42" in s.output, timeout=20, what="the echo")
        await database_sync_to_async(sign_out)()
        await screen.until(lambda s: s.closed_code is not None, timeout=15, what="the close after signing out")
        await comm.disconnect(code=4000, timeout=15)
        return screen

    screen = async_to_sync(session)()
    closed = screen.message("closed")
    assert closed == {"v": 1, "type": "closed", "reason": reason}
    assert screen.closed_code == 4000
    terminal_session = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="the session record"
    )
    assert terminal_session.end_reason == reason
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert ended.detail["reason"] == reason
    assert "before-sign-out-42" in terminal_session.transcript
    assert terminal_session.transcript_index["commands"][0][1] == "echo before-sign-out-$((6*7))"


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
