"""Revoking a CLI token closes the CLI proxy connections that signed in with it: the revocation
tells that token's channel-layer group, after commit, and no other; an open connection says why
and closes as unauthenticated, and one that was opening when the token went reads it again."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from accounts import cli_tokens
from accounts.authentication import hash_token
from accounts.models import ApiToken, User
from passport_portal.asgi import application
from requests_app.models import Grant
from terminal import services
from terminal.proxy import consumer as consumer_module
from terminal.proxy.auth import CLOSE_UNAUTHENTICATED
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant


def issue(user: User) -> ApiToken:
    return ApiToken.objects.create(
        user=user,
        name="cli",
        token_hash=hash_token(secrets.token_urlsafe(32)),
        expires_at=timezone.now() + timedelta(hours=1),
    )


@pytest.mark.django_db
def test_a_revocation_tells_that_tokens_group_only(world: World, django_capture_on_commit_callbacks: Any) -> None:
    layer = get_channel_layer()
    revoked, kept = issue(world.requester), issue(world.requester)

    async def listen(token_id: int) -> str:
        channel = await layer.new_channel()
        await layer.group_add(services.token_group(token_id), channel)
        return channel

    mine = async_to_sync(listen)(revoked.pk)
    other = async_to_sync(listen)(kept.pk)
    with django_capture_on_commit_callbacks(execute=True):
        cli_tokens.api_token_revoke(token=revoked, actor=world.requester, reason=cli_tokens.RevokeReason.REVOKED)

    async def received() -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            message = await asyncio.wait_for(layer.receive(mine), 5)
            # Had the revocation reached the other token's group, it would be ahead of this probe.
            await layer.group_send(services.token_group(kept.pk), {"type": "probe"})
            first_for_other = await asyncio.wait_for(layer.receive(other), 5)
            return message, first_for_other
        finally:
            await layer.group_discard(services.token_group(revoked.pk), mine)
            await layer.group_discard(services.token_group(kept.pk), other)

    message, first_for_other = async_to_sync(received)()
    assert message == {"type": "cli.sign_in_revoked", "reason": services.SIGN_IN_REVOKED_MESSAGE}
    assert first_for_other == {"type": "probe"}


@pytest.mark.django_db
def test_revoking_all_of_a_persons_tokens_tells_each_group(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    layer = get_channel_layer()
    tokens = [issue(world.requester), issue(world.requester)]

    async def listen() -> str:
        channel = await layer.new_channel()
        for token in tokens:
            await layer.group_add(services.token_group(token.pk), channel)
        return channel

    channel = async_to_sync(listen)()
    with django_capture_on_commit_callbacks(execute=True):
        world.requester.set_password("a-new-long-password")
        world.requester.save()

    async def received() -> list[dict[str, Any]]:
        try:
            return [await asyncio.wait_for(layer.receive(channel), 5) for _ in tokens]
        finally:
            for token in tokens:
                await layer.group_discard(services.token_group(token.pk), channel)

    assert (
        async_to_sync(received)() == [{"type": "cli.sign_in_revoked", "reason": services.SIGN_IN_REVOKED_MESSAGE}] * 2
    )


def _open_proxy(grant: Grant, raw: str) -> WebsocketCommunicator:
    path = f"/ws/cli/requests/{grant.request_id}/grants/{grant.instance.instance_id}/ssh/"
    headers = [(b"host", b"testserver"), (b"authorization", f"Bearer {raw}".encode())]
    return WebsocketCommunicator(application, path, headers=headers)


async def _until_closed(comm: WebsocketCommunicator) -> tuple[list[dict[str, Any]], int | None]:
    """The control frames the CLI is sent, then the close code (SSH bytes are skipped)."""
    frames: list[dict[str, Any]] = []
    while True:
        event = await comm.receive_output(timeout=15)
        if event["type"] == "websocket.close":
            return frames, event.get("code")
        if event.get("text"):
            frames.append(json.loads(event["text"]))


@pytest.mark.usefixtures("live_db")
def test_an_open_proxy_connection_ends_when_its_token_is_revoked(world: World, settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = False  # no AWS here: the connection is refused or kept on the token alone
    grant = make_active_grant(world)
    raw = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=world.requester, name="cli", token_hash=hash_token(raw), expires_at=timezone.now() + timedelta(hours=1)
    )
    other = issue(world.requester)  # the person's other sign-in: revoking it leaves this connection be

    async def run() -> tuple[list[dict[str, Any]], int | None]:
        comm = _open_proxy(grant, raw)
        connected, _ = await comm.connect(timeout=10)
        assert connected
        banner = await comm.receive_output(timeout=15)  # the portal's SSH server speaks first
        assert banner.get("bytes", b"").startswith(b"SSH-2.0-"), banner
        await database_sync_to_async(cli_tokens.api_token_revoke)(
            token=other, actor=world.requester, reason=cli_tokens.RevokeReason.REVOKED
        )
        assert await comm.receive_nothing(timeout=1)
        await database_sync_to_async(cli_tokens.api_token_revoke)(
            token=token, actor=world.requester, reason=cli_tokens.RevokeReason.REVOKED
        )
        return await _until_closed(comm)

    frames, code = async_to_sync(run)()
    assert frames == [{"type": "closed", "reason": services.SIGN_IN_REVOKED_MESSAGE}]
    assert code == CLOSE_UNAUTHENTICATED  # the CLI exits 3: sign in again


@pytest.mark.usefixtures("live_db")
def test_a_token_revoked_while_the_connection_opens_is_not_missed(
    world: World, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revoked after the handshake's check and before the connection listens to its token's group."""
    settings.PASSPORT_IAM_CHECK = False
    grant = make_active_grant(world)
    raw = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=world.requester, name="cli", token_hash=hash_token(raw), expires_at=timezone.now() + timedelta(hours=1)
    )
    checked = consumer_module.grant_for_proxy

    def check_then_revoke(**kwargs: Any) -> Any:
        found = checked(**kwargs)
        ApiToken.objects.filter(pk=token.pk).delete()  # behind the group's back: no message comes
        return found

    monkeypatch.setattr(consumer_module, "grant_for_proxy", check_then_revoke)

    async def run() -> tuple[list[dict[str, Any]], int | None]:
        comm = _open_proxy(grant, raw)
        connected, _ = await comm.connect(timeout=10)
        assert connected
        return await _until_closed(comm)

    frames, code = async_to_sync(run)()
    assert frames == [{"type": "closed", "reason": services.SIGN_IN_REVOKED_MESSAGE}]
    assert code == CLOSE_UNAUTHENTICATED
