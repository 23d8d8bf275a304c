"""How a removal ends when it cannot run.

Against the fake fleet, with the helpers of test_provisioning: a removal the fleet refuses for
good because the instance is gone ends the grant (the user went with the host); one it refuses
for good on a host still there goes on being retried, flagged for an operator.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from audit.models import LogbookEntry
from fleet import FleetError
from requests_app import services
from requests_app.models import GrantStatus, RequestStatus
from requests_app.services.provisioning import Outcome
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, ok
from tests.requests_app.test_provisioning import (  # noqa: F401  (timings: the lease of 30 s, autouse)
    T0,
    actions,
    active_request,
    grant,
    reload,
    timings,
)

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


@pytest.fixture
def frozen(time_machine: Any) -> Any:
    time_machine.move_to(T0, tick=False)
    return time_machine


def _ending(world: World) -> tuple[Any, int]:
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    return access_request, grant_id


def test_removal_from_a_terminated_instance_ends_the_grant_and_the_request(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """The instance is terminated, the user gone with it: the fleet says so for good. The grant
    is removed at once, its Logbook entry saying why, and the request completes."""
    access_request, grant_id = _ending(world)
    fleet.will(
        FleetError(
            f"SendCommand to {world.web.instance_id} refused: InvalidInstanceId (the instance is terminated)",
            retryable=False,
            instance_gone=True,
        )
    )

    assert services.grant_deprovision(grant_id=grant_id) == Outcome()

    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVED
    assert left.removed_at == T0 and left.lease_until is None and left.next_attempt_at is None
    assert reload(access_request).status == RequestStatus.COMPLETED
    assert actions(access_request)[-2:] == ["grant.removed", "request.completed"]
    assert "grant.remove_retry" not in actions(access_request)
    removed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removed")
    assert removed.detail["instance_gone"] is True
    assert removed.detail["command_id"] is None
    assert "the instance is terminated" in removed.detail["error"]


def test_a_refusal_for_good_on_a_host_still_there_is_retried_and_flagged_once(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """SendCommand refuses for good (the document, the role) but the instance is there, and so is
    the user: the grant is not called removed. It is retried, flagged for an operator, and the
    Logbook says so once, not at every attempt."""
    access_request, grant_id = _ending(world)
    stuck = FleetError(f"SendCommand to {world.web.instance_id} refused: InvalidDocument", retryable=False)
    outcomes = []
    for _ in range(4):
        fleet.will(stuck)
        outcomes.append(services.grant_deprovision(grant_id=grant_id))
        frozen.shift(timedelta(minutes=16))

    assert all(outcome.retry_in for outcome in outcomes), outcomes
    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVING
    assert left.cleanup_attempts == 4
    assert "needs an operator" in left.last_error and "InvalidDocument" in left.last_error
    assert reload(access_request).status == RequestStatus.COMPLETING
    log = actions(access_request)
    assert log.count("grant.removal_stuck") == 1
    assert "grant.remove_retry" not in log and "grant.removed" not in log

    # Once an operator mended it, the next attempt removes the user; the flag goes with it.
    fleet.will(ok("cmd-rm-mended"))
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert grant(grant_id).last_error == ""
    assert reload(access_request).status == RequestStatus.COMPLETED
