"""The CLI proxy's forwards on record (``terminal.services.forwards``) and the orphan sweep's end of
those whose web process stopped beating (``terminal.sweeps.forwards_finalise_orphaned``). The
kill -9 of a real web process is tests/terminal/proxy/test_forward_on_record.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from audit.models import LogbookEntry
from terminal.models import ProxyForward
from terminal.services.forwards import proxy_forward_end, proxy_forward_open, proxy_forwards_heartbeat
from terminal.sweeps import forwards_finalise_orphaned
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db

# What a client may name in ssh -L never reaches the proxy's forward unchecked, but what is stored is
# stored as data all the same.
HOSTILE_HOST = "db\n\x1b[31m\u202e'\"; rm -rf / #"


@pytest.fixture
def clock(time_machine: Any) -> Any:
    """The clock stopped now; the test moves it on."""
    time_machine.move_to(timezone.now(), tick=False)
    return time_machine


def _closed(forward_id: int) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action="forward.closed", detail__forward=forward_id).order_by("pk"))


def test_a_forward_is_on_record_as_it_opens_and_the_sweep_ends_it_once_its_process_is_silent(
    world: World, clock: Any
) -> None:
    grant = make_active_grant(world)
    forward_id = proxy_forward_open(grant=grant, user=world.requester, host=HOSTILE_HOST, port=5432)
    opened = LogbookEntry.objects.get(action="forward.opened", detail__forward=forward_id)
    assert opened.detail["host"] == HOSTILE_HOST and opened.detail["port"] == 5432
    assert opened.request_id == grant.request_id and opened.actor_id == world.requester.pk

    stale = settings.PASSPORT_RECORDING_STALE_SECONDS
    clock.shift(timedelta(seconds=stale - 5))
    assert proxy_forwards_heartbeat(forward_ids=[forward_id]) == 1  # still served
    clock.shift(timedelta(seconds=stale - 5))
    assert forwards_finalise_orphaned() == 0 and not _closed(forward_id)

    clock.shift(timedelta(seconds=10))  # its process stopped beating
    assert forwards_finalise_orphaned() == 1
    assert forwards_finalise_orphaned() == 0  # once
    (entry,) = _closed(forward_id)
    assert entry.detail["reason"] == "interrupted" and entry.detail["sealed_by"] == "sweep"
    assert entry.detail["host"] == HOSTILE_HOST and entry.detail["port"] == 5432
    assert ProxyForward.objects.get(pk=forward_id).ended_at is not None


def test_a_forward_its_process_closed_is_not_ended_again_by_the_sweep(world: World, clock: Any) -> None:
    grant = make_active_grant(world)
    forward_id = proxy_forward_open(grant=grant, user=world.requester, host="127.0.0.1", port=5432)
    detail = {"client": "cli", "target": "127.0.0.1:5432", "port": 5432, "bytes_to_instance": 7}
    assert proxy_forward_end(forward_id=forward_id, grant=grant, user=world.requester, host="127.0.0.1", detail=detail)
    clock.shift(timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS + 60))
    assert forwards_finalise_orphaned() == 0
    (entry,) = _closed(forward_id)
    assert entry.detail["bytes_to_instance"] == 7 and "reason" not in entry.detail


def test_a_process_that_was_only_slow_still_writes_its_bytes_after_the_sweep(world: World, clock: Any) -> None:
    grant = make_active_grant(world)
    forward_id = proxy_forward_open(grant=grant, user=world.requester, host="127.0.0.1", port=5432)
    clock.shift(timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS + 1))
    assert forwards_finalise_orphaned() == 1
    assert proxy_forwards_heartbeat(forward_ids=[forward_id]) == 0  # ended: no longer beats
    detail = {"client": "cli", "target": "127.0.0.1:5432", "port": 5432, "bytes_to_instance": 9}
    assert not proxy_forward_end(
        forward_id=forward_id, grant=grant, user=world.requester, host="127.0.0.1", detail=detail
    )
    swept, late = _closed(forward_id)
    assert swept.detail["reason"] == "interrupted"
    assert late.detail["bytes_to_instance"] == 9 and late.detail["after_sweep"] is True
