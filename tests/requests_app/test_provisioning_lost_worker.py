"""A worker that dies in the middle of a grant's attempt (killed for memory, the host restarted):
the attempt counts, and the grant is not claimed past ``PASSPORT_GRANT_MAX_ATTEMPTS``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import EndReason, GrantStatus, RequestStatus
from requests_app.services.provisioning import Outcome
from requests_app.services.provisioning.upkeep import stuck_work
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, ok
from tests.requests_app.test_provisioning import LEASE, T0, actions, grant, provisioning_request, reload

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


@pytest.fixture(autouse=True)
def timings(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_RUN_COMMAND_TIMEOUT = 300
    settings.PASSPORT_LEASE_SECONDS = 30
    settings.PASSPORT_SWEEP_GRACE_SECONDS = 30
    settings.PASSPORT_GRANT_MAX_ATTEMPTS = 3
    time_machine.move_to(T0, tick=False)


class WorkerKilled(BaseException):
    """The worker process ends mid-script: nothing after the call to the fleet runs, not even
    ``finally`` blocks' effects on the database settle the attempt."""


def _die_on_every_attempt(fleet: FakeFleet, grant_id: int, attempts: int, time_machine: Any) -> None:
    fleet.will(*[WorkerKilled() for _ in range(attempts)])
    for _ in range(attempts):
        with pytest.raises(WorkerKilled):
            services.grant_provision(grant_id=grant_id)
        assert grant(grant_id).status == GrantStatus.PROVISIONING
        time_machine.shift(LEASE + timedelta(seconds=1))  # the lease runs out; the sweep hands it out again
        assert grant_id in stuck_work().to_provision


def test_a_grant_whose_worker_dies_on_its_last_attempt_fails_and_so_does_its_request(
    world: World,
    fleet: FakeFleet,
    time_machine: Any,
    django_capture_on_commit_callbacks: Any,
    queued: list[tuple[str, int]],
) -> None:
    access_request, (grant_id,) = provisioning_request(world)
    _die_on_every_attempt(fleet, grant_id, 3, time_machine)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.grant_provision(grant_id=grant_id) == Outcome()

    lost = grant(grant_id)
    assert lost.attempts == 3  # not claimed a fourth time
    assert "worker" in lost.last_error
    assert grant_id not in stuck_work().to_provision
    failed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.failed")
    assert failed.detail["attempts"] == 3 and "worker" in failed.detail["error"]
    assert actions(access_request).count("grant.provisioning") == 3
    # Its only grant: the request fails, and whatever the lost attempts made is removed.
    access_request = reload(access_request)
    assert access_request.status == RequestStatus.FAILED
    assert access_request.end_reason == EndReason.FAILED
    assert actions(access_request)[-1] == "request.failed"
    assert lost.status == GrantStatus.REMOVING
    assert queued == [("deprovision_grant", grant_id)]


def test_a_lost_worker_under_the_limit_is_claimed_again(world: World, fleet: FakeFleet, time_machine: Any) -> None:
    access_request, (grant_id,) = provisioning_request(world)
    _die_on_every_attempt(fleet, grant_id, 2, time_machine)
    fleet.will(ok())

    assert services.grant_provision(grant_id=grant_id) == Outcome()

    assert grant(grant_id).status == GrantStatus.READY
    assert grant(grant_id).attempts == 3
    assert reload(access_request).status == RequestStatus.ACTIVE


def test_a_grant_lost_for_good_beside_a_ready_one_fails_alone(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    access_request, (first, second) = provisioning_request(world, [world.web, world.db])
    fleet.will(ok())
    services.grant_provision(grant_id=second)
    _die_on_every_attempt(fleet, first, 3, time_machine)

    services.grant_provision(grant_id=first)

    assert grant(first).status == GrantStatus.FAILED
    assert grant(second).status == GrantStatus.READY
    assert reload(access_request).status == RequestStatus.ACTIVE
    # Failed, it is removed when the request ends, as any failed grant is.
    services.access_request_complete(access_request=reload(access_request), actor=world.requester)
    assert grant(first).status == GrantStatus.REMOVING
