"""A CLI proxy connection ends at its request's end time, not up to a request round
(``PASSPORT_PROXY_REQUEST_CHECK_SECONDS``) later: its upkeep wakes at the end it last read, and the
round it runs then ends it; an extension read at a round moves that wake. The rounds and the
database are real; the connection is the part upkeep acts on, here one that notes what it was told."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from requests_app.models import AccessRequest, Grant
from terminal.proxy.sign_in import SignIn
from terminal.proxy.upkeep import connection_upkeep
from tests.conftest import World
from tests.terminal.test_rounds import _active_request

pytestmark = pytest.mark.usefixtures("live_db")


class _Connection:
    """What ``connection_upkeep`` reads of and tells a ``ProxyConnection``."""

    def __init__(self, grant: Grant) -> None:
        self.grant = grant
        self.sign_in = SignIn()
        self.forwards: list[Any] = []
        self.slot_id = None
        self.ending = False
        self.told: list[tuple[str, Any]] = []

    def end_for_request(self, message: str) -> None:
        self.told.append(("request", message))
        self.ending = True

    def end_soon(self, message: str, **kwargs: Any) -> None:
        self.told.append(("sign-in", message))
        self.ending = True

    def region_off(self, **kwargs: Any) -> None:
        self.told.append(("region", kwargs))
        self.ending = True

    async def withdraw_forwards(self, **kwargs: Any) -> None:
        return None


def _run(connection: _Connection, seconds: float) -> bool:
    """Run the upkeep until it returns (True) or ``seconds`` pass (False)."""

    async def run() -> bool:
        try:
            await asyncio.wait_for(connection_upkeep(connection), seconds)  # type: ignore[arg-type]
        except TimeoutError:
            return False
        return True

    return asyncio.run(run())


def test_the_connection_ends_at_the_requests_end_between_its_rounds(world: World, settings: Any) -> None:
    settings.PASSPORT_PROXY_REQUEST_CHECK_SECONDS = 3600  # no round before the end
    access_request = _active_request(world)
    ends_at = timezone.now() + timedelta(seconds=2)
    AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=ends_at)
    connection = _Connection(Grant.objects.select_related("instance").get(request=access_request))

    assert _run(connection, 30), "the connection outlived its request's end until the next round"
    assert timezone.now() >= ends_at
    assert [kind for kind, _ in connection.told] == ["request"]
    assert "expired" in connection.told[0][1]


def test_an_extension_read_at_a_round_moves_the_end_it_wakes_at(world: World, settings: Any) -> None:
    """The end first read is 3 s away; the request is extended before the round a second later, which
    reads the new end: the connection does not end at the old one (a guard for the wake above)."""
    settings.PASSPORT_PROXY_REQUEST_CHECK_SECONDS = 1
    access_request = _active_request(world)
    AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=timezone.now() + timedelta(seconds=3))
    connection = _Connection(Grant.objects.select_related("instance").get(request=access_request))

    def extend() -> None:
        later = timezone.now() + timedelta(hours=1)
        AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=later)

    async def run() -> bool:
        upkeep = asyncio.ensure_future(connection_upkeep(connection))  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        await sync_to_async(extend, thread_sensitive=False)()
        done, _ = await asyncio.wait({upkeep}, timeout=5)  # past the old end
        upkeep.cancel()
        return bool(done)

    assert not asyncio.run(run()), connection.told
    assert connection.told == []
