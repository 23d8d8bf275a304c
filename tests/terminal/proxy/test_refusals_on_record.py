"""Refusals at the CLI proxy's WebSocket are on record as the same refusals in the API are: a refused
bearer token (expired, revoked, unknown) as ``cli.token_refused``, keyed by the client's address as
``audit.refusals`` vouches for it (X-Forwarded-For only from our proxies), and another person's use
of a grant they may see (an approver) as ``credentials.use_denied``. Real ASGI application."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from accounts import cli_tokens
from audit.models import LogbookEntry, RefusalTally
from passport_portal.asgi import application
from tests.conftest import World
from tests.terminal.proxy.test_refusals import assert_refused, attempt, bearer, token_for
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.usefixtures("live_db")

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQmQ x"


def _recorded(action: str) -> int:
    # Entries written, and refusals only counted (audit.refusals: the same one again in the window).
    tallies = RefusalTally.objects.filter(action=action).values_list("count", flat=True)
    return LogbookEntry.objects.filter(action=action).count() + sum(tallies)


def test_a_refused_token_is_on_record_as_in_the_api(world: World) -> None:
    grant = make_active_grant(world)
    expired = token_for(world.requester, expires_in=timedelta(seconds=-1))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {expired}")
    assert api.get("/api/requests/").status_code == 401
    api_count = _recorded("cli.token_refused")
    assert api_count >= 1
    assert_refused(attempt(grant, bearer(expired)), 4401, "expired")
    after_expired = _recorded("cli.token_refused")
    assert after_expired > api_count, "the proxy's refusal of an expired token left no cli.token_refused"
    live = token_for(world.requester)
    cli_tokens.api_tokens_revoke_for_user(
        user_id=world.requester.pk, actor=world.requester, reason=cli_tokens.RevokeReason.REVOKED
    )
    assert_refused(attempt(grant, bearer(live)), 4401, "Unknown or revoked")
    assert _recorded("cli.token_refused") > after_expired, "the proxy's refusal of a revoked token left nothing"
    # Named by its person and its token's id (an expired token's row is there), never by the token itself.
    named = LogbookEntry.objects.filter(action="cli.token_refused", detail__reason="expired").last()
    assert named is not None and named.actor_id == world.requester.pk
    assert expired not in str(named.detail) and live not in str(named.detail)


def test_an_approvers_use_of_the_requesters_grant_is_on_record(world: World) -> None:
    grant = make_active_grant(world)  # the requester's
    # The approver of prod sees the request. The certificate API refuses them, on record.
    approver = token_for(world.approver)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {approver}")
    answered = api.post(
        f"/api/requests/{grant.request_id}/grants/{grant.instance.instance_id}/certificate/",
        {"public_key": PUBLIC_KEY},
        format="json",
    )
    assert answered.status_code in (403, 404), answered.content
    api_count = _recorded("credentials.use_denied")
    seen = attempt(grant, bearer(approver))
    assert seen["code"] == 4403, seen
    assert _recorded("credentials.use_denied") > api_count, "the proxy's refusal of another person left nothing"
    entry = LogbookEntry.objects.filter(action="credentials.use_denied", detail__purpose="session").get()
    assert entry.actor_id == world.approver.pk and entry.request_id == grant.request_id
    assert entry.detail["grant"] == grant.pk and grant.instance.instance_id in entry.instance_ids


def _unknown_token_from(peer: str, forwarded_for: str) -> None:
    """An unknown token's handshake as daphne hands it on: from ``peer``, with an X-Forwarded-For."""

    async def from_peer(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await application({**scope, "client": (peer, 50000)}, receive, send)

    async def run() -> None:
        headers = [(b"host", b"testserver"), (b"x-forwarded-for", forwarded_for.encode()), *bearer("not-a-token")]
        comm = WebsocketCommunicator(from_peer, "/ws/cli/requests/1/grants/i-0123456789abcdef0/ssh/", headers=headers)
        connected, _ = await comm.connect(timeout=10)
        assert connected
        while (await comm.receive_output(timeout=10))["type"] != "websocket.close":
            pass

    async_to_sync(run)()


def test_a_refused_tokens_address_is_the_one_our_proxy_vouches_for(settings: Any) -> None:
    settings.PASSPORT_TRUSTED_PROXY_COUNT = 1
    _unknown_token_from("127.0.0.1", "203.0.113.7")  # nginx on this host, as PASSPORT_TRUSTED_PROXIES says
    # A client that reaches the web process directly writes the header itself: its own address counts.
    _unknown_token_from("198.51.100.9", "203.0.113.8")
    sources = set(RefusalTally.objects.filter(action="cli.token_refused").values_list("source", flat=True))
    assert sources == {"203.0.113.7", "198.51.100.9"}, sources
