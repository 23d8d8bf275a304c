"""A host that never answers a removal: tried for ever, but the Logbook hears of it sparingly
(``grant.remove_retry`` on the first failure, when the error changes, and about once a day), and
after ``REMOVAL_TRIES_BEFORE_OPERATOR`` tries the grant says it needs an operator, said once
(``grant.removal_stuck``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from audit.models import LogbookEntry
from fleet import FleetError
from requests_app import services
from requests_app.models import GrantStatus
from requests_app.services.provisioning.remove import REMOVAL_TRIES_BEFORE_OPERATOR, REMOVE_RETRY_WRITTEN_EVERY
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, ok
from tests.requests_app.test_provisioning import T0, active_request, grant, timings  # noqa: F401

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")

UNREACHABLE = "Run Command timed out: instance not connected (stopped)"


def _fail_removal(fleet: FakeFleet, grant_id: int, time_machine: Any, errors: list[str]) -> None:
    fleet.will(*[FleetError(error) for error in errors])
    for _ in errors:
        out = services.grant_deprovision(grant_id=grant_id)
        assert out.retry_in is not None
        time_machine.shift(timedelta(seconds=out.retry_in + 1))


def _written(request_id: int, action: str) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(request_id=request_id, action=action).order_by("id"))


def test_two_hundred_failed_removals_are_a_handful_of_entries_and_one_call_for_an_operator(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)

    _fail_removal(fleet, grant_id, time_machine, [UNREACHABLE] * 200)

    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVING and left.cleanup_attempts == 200  # still tried
    assert left.cleanup_failures == 200  # each counted (the Run Command error metric), if not written
    assert "needs an operator" in left.last_error and UNREACHABLE in left.last_error
    retries = _written(access_request.pk, "grant.remove_retry")
    # The first failure, then one about a day apart (200 tries at the 15-minute cap: two days).
    assert [entry.detail["attempt"] for entry in retries] == [
        1,
        REMOVE_RETRY_WRITTEN_EVERY,
        2 * REMOVE_RETRY_WRITTEN_EVERY,
    ]
    (stuck,) = _written(access_request.pk, "grant.removal_stuck")
    assert stuck.detail["attempt"] == REMOVAL_TRIES_BEFORE_OPERATOR and UNREACHABLE in stuck.detail["error"]

    fleet.will(ok())
    services.grant_deprovision(grant_id=grant_id)
    assert grant(grant_id).status == GrantStatus.REMOVED and grant(grant_id).last_error == ""
    assert grant(grant_id).cleanup_failures == 200  # never lowered: the metric is a counter


def test_a_changed_error_is_written_and_under_the_limit_no_operator_is_called(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)

    _fail_removal(fleet, grant_id, time_machine, [UNREACHABLE] * 5 + ["Throttled"] * 5 + [UNREACHABLE] * 5)

    retries = _written(access_request.pk, "grant.remove_retry")
    assert [(entry.detail["attempt"], entry.detail["error"]) for entry in retries] == [
        (1, UNREACHABLE),
        (6, "Throttled"),
        (11, UNREACHABLE),
    ]
    assert not _written(access_request.pk, "grant.removal_stuck")
    assert "needs an operator" not in grant(grant_id).last_error
