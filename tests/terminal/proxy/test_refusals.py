"""The CLI proxy's WebSocket refuses everyone it should, against the real ASGI application:
a ``refused`` text frame with the reason, then a close code that says why."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from accounts.authentication import hash_token
from accounts.models import ApiToken, AwsAccount, Membership, User
from passport_portal.asgi import application
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from tests.conftest import World
from tests.terminal.helpers import session_cookie
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.usefixtures("live_db")


def token_for(user: User, *, expires_in: timedelta = timedelta(hours=1)) -> str:
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, name="test", token_hash=hash_token(raw), expires_at=timezone.now() + expires_in)
    return raw


def attempt(grant: Grant, headers: list[tuple[bytes, bytes]], instance_id: str | None = None) -> dict[str, Any]:
    path = f"/ws/cli/requests/{grant.request_id}/grants/{instance_id or grant.instance.instance_id}/ssh/"

    async def run() -> dict[str, Any]:
        comm = WebsocketCommunicator(application, path, headers=[(b"host", b"testserver"), *headers])
        connected, code = await comm.connect(timeout=10)
        seen: dict[str, Any] = {"connected": connected, "code": code, "frames": []}
        if not connected:
            return seen
        while True:
            event = await comm.receive_output(timeout=10)
            if event["type"] == "websocket.close":
                seen["code"] = event.get("code")
                return seen
            seen["frames"].append(json.loads(event["text"]) if event.get("text") else event.get("bytes"))

    return async_to_sync(run)()


def bearer(raw: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {raw}".encode())]


def assert_refused(seen: dict[str, Any], code: int, words: str) -> None:
    assert seen["connected"], seen
    assert seen["code"] == code, seen
    assert len(seen["frames"]) == 1 and seen["frames"][0]["type"] == "refused", seen
    assert words in seen["frames"][0]["reason"], seen


def test_without_a_token(world: World) -> None:
    grant = make_active_grant(world)
    assert_refused(attempt(grant, []), 4401, "no bearer token")
    assert_refused(attempt(grant, bearer("not-a-token")), 4401, "Unknown or revoked token")
    expired = token_for(world.requester, expires_in=timedelta(seconds=-1))
    assert_refused(attempt(grant, bearer(expired)), 4401, "expired")
    world.requester.is_active = False
    world.requester.save()
    assert_refused(attempt(grant, bearer(token_for(world.requester))), 4401, "Unknown or revoked")


def test_a_cookie_is_refused_before_the_socket_opens(world: World) -> None:
    """Even with a valid token and the site's own Origin: the route is for the CLI's token only."""
    grant = make_active_grant(world)
    headers = [
        *bearer(token_for(world.requester)),
        (b"cookie", session_cookie(world.requester).encode()),
        (b"origin", b"http://testserver"),
    ]
    seen = attempt(grant, headers)
    assert not seen["connected"] and seen["code"] == 4402


def test_the_browser_routes_still_need_their_origin(world: World) -> None:
    """The gate sends every other path to the browser stack: no Origin, no terminal."""
    grant = make_active_grant(world)

    async def run() -> tuple[bool, Any]:
        comm = WebsocketCommunicator(
            application, f"/ws/terminal/{grant.pk}/", headers=[(b"host", b"testserver"), *bearer("x")]
        )
        return await comm.connect(timeout=5)

    connected, _ = async_to_sync(run)()
    assert not connected


def test_only_the_requester(world: World) -> None:
    grant = make_active_grant(world)
    # The approver sees the request but may not use it; a colleague does not see it at all.
    assert_refused(attempt(grant, bearer(token_for(world.approver))), 4403, "Only the person who asked")
    assert_refused(attempt(grant, bearer(token_for(world.member))), 4404, "no instance")
    assert_refused(attempt(grant, bearer(token_for(world.requester)), "i-0000000000000dead"), 4404, "no instance")


def test_a_requester_who_is_no_longer_admin_is_refused(world: World) -> None:
    """Demoted or removed after the request was made: the proxy carries nothing, and says why."""
    grant = make_active_grant(world)
    raw = token_for(world.requester)
    memberships = Membership.objects.filter(user=world.requester, account=world.prod)
    memberships.update(role=Membership.Role.OBSERVER)
    assert_refused(attempt(grant, bearer(raw)), 4403, "You have the Observer role on Acme Production (111111111111)")
    memberships.delete()
    assert_refused(attempt(grant, bearer(raw)), 4403, "You have no role on Acme Production (111111111111)")


def test_windows_direct_and_inactive(world: World) -> None:
    raw = token_for(world.requester)
    windows = make_active_grant(world, world.windows)
    assert_refused(attempt(windows, bearer(raw)), 4406, "Linux")

    grant = make_active_grant(world)
    AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    assert_refused(attempt(grant, bearer(raw)), 4409, "direct")

    AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)
    AccessRequest.objects.filter(pk=grant.request_id).update(status=RequestStatus.COMPLETED)
    assert_refused(attempt(grant, bearer(raw)), 4410, "active request")
    AccessRequest.objects.filter(pk=grant.request_id).update(status=RequestStatus.ACTIVE)
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.PROVISIONING)
    assert_refused(attempt(grant, bearer(raw)), 4410, "ready user")


def test_a_hostile_instance_in_the_path_is_only_echoed_as_data(world: World) -> None:
    grant = make_active_grant(world)
    hostile = "i-\x1b[31m$(touch pwned)"
    seen = attempt(grant, bearer(token_for(world.requester)), hostile)
    assert_refused(seen, 4404, "no instance")
    assert hostile in seen["frames"][0]["reason"]  # JSON data for the CLI, which escapes it (test_cli_side)
