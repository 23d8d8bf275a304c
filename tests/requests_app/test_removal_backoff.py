"""A failed removal waits out its backoff (``next_attempt_at``), as a failed create does: neither the
resume sweep nor a second delivery of its task (the sweep's, a redelivered message) runs the script
on the failing host again before then. A second delivery that did would also start a second chain
of retries, and the host would be tried twice as often from then on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings

from fleet import FleetError
from requests_app import services
from requests_app.models import GrantStatus
from requests_app.services.provisioning import Outcome
from tests.conftest import World
from tests.fakes.fleet import FakeFleet
from tests.requests_app.test_provisioning import T0, active_request, grant, timings  # noqa: F401

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")

UNREACHABLE = "Run Command timed out: instance not connected (stopped)"


def _failing(fleet: FakeFleet, grant_id: int, time_machine: Any, tries: int) -> float:
    """Fail the removal ``tries`` times, each at its due time; the last one's backoff, in seconds."""
    fleet.will(*[FleetError(UNREACHABLE) for _ in range(tries)])
    retry_in: float = 0
    for _ in range(tries):
        time_machine.shift(timedelta(seconds=retry_in))
        out = services.grant_deprovision(grant_id=grant_id)
        assert out.retry_in is not None
        retry_in = out.retry_in
    return retry_in


def test_a_second_delivery_before_the_backoff_is_over_runs_nothing(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    retry_in = _failing(fleet, grant_id, time_machine, 5)
    assert retry_in > 60  # backing off
    waiting = grant(grant_id)
    calls = len(fleet.calls)

    time_machine.shift(timedelta(seconds=retry_in // 2))
    # Delivered again mid-backoff: not run on the host, not counted as a try, and no retry of its
    # own (the grant's own retry, queued for its time, and the sweep after it take it up).
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert len(fleet.calls) == calls
    after = grant(grant_id)
    assert (after.cleanup_attempts, after.next_attempt_at, after.lease_until) == (
        waiting.cleanup_attempts,
        waiting.next_attempt_at,
        None,
    )
    # The batch path claims the same way.
    assert services.grants_deprovision(grant_ids=[grant_id]) == {grant_id: Outcome()}
    assert len(fleet.calls) == calls

    # Its own retry, at its time, runs.
    time_machine.move_to(waiting.next_attempt_at, tick=False)
    fleet.will(FleetError(UNREACHABLE))
    assert services.grant_deprovision(grant_id=grant_id).retry_in is not None
    assert len(fleet.calls) == calls + 1
    assert grant(grant_id).cleanup_attempts == waiting.cleanup_attempts + 1


def test_the_resume_sweep_leaves_a_removal_waiting_out_its_backoff(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    _failing(fleet, grant_id, time_machine, 5)
    due = grant(grant_id).next_attempt_at
    assert due is not None and grant(grant_id).status == GrantStatus.REMOVING
    grace = timedelta(seconds=settings.PASSPORT_SWEEP_GRACE_SECONDS)

    time_machine.move_to(due + grace - timedelta(seconds=1), tick=False)
    assert grant_id not in services.stuck_work().to_remove
    # Its own retry was lost (a broker restart): the sweep hands it out once the grace is over.
    time_machine.move_to(due + grace + timedelta(seconds=1), tick=False)
    assert grant_id in services.stuck_work().to_remove
