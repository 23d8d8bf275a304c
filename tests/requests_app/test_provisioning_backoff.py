"""A grant whose attempt failed waits out its backoff (``next_attempt_at``), whoever hands it out:
its retry after the backoff, the resume sweep after that and its grace, and not a second delivery
of ``begin_provisioning`` (acks_late redelivers a task whose worker died after its commit, and the
resume sweep hands out a request still approved after its grace while the first delivery is queued).

``fleet_for`` is replaced by ``FakeFleet`` (Systems Manager only), the Celery queue by a recorder.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fleet import FleetError
from requests_app import services
from requests_app.models import GrantStatus
from requests_app.services.provisioning import Outcome
from requests_app.services.provisioning.upkeep import stuck_work
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, ok
from tests.requests_app.test_provisioning import T0, grant, provisioning_request

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


@pytest.fixture(autouse=True)
def timings(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_RUN_COMMAND_TIMEOUT = 300
    settings.PASSPORT_LEASE_SECONDS = 30
    settings.PASSPORT_SWEEP_GRACE_SECONDS = 30
    time_machine.move_to(T0, tick=False)


def test_begin_provisioning_again_hands_out_no_grant_waiting_for_its_backoff(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    access_request, (grant_id,) = provisioning_request(world)
    fleet.will(FleetError("Throttled"))
    assert services.grant_provision(grant_id=grant_id) == Outcome(retry_in=5)
    assert grant(grant_id).next_attempt_at == T0 + timedelta(seconds=5)

    # A second delivery of the request's begin_provisioning, a second later.
    time_machine.shift(timedelta(seconds=1))
    handed_out = services.access_request_begin_provisioning(request_id=access_request.pk)
    for other_id in handed_out:
        services.grant_provision(grant_id=other_id)

    assert len(fleet.calls) == 1  # no second Run Command inside the backoff
    assert handed_out == []
    waiting = grant(grant_id)
    assert waiting.status == GrantStatus.PENDING and waiting.attempts == 1
    assert grant_id not in stuck_work().to_provision

    # Its own retry, after the backoff, runs it again.
    time_machine.shift(timedelta(seconds=4))
    fleet.will(ok())
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.READY and grant(grant_id).attempts == 2


def test_a_second_delivery_of_a_grant_inside_its_backoff_claims_nothing(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    """The sweep handed the grant out after its backoff and grace while its own retry was still
    queued (the workers busy): the first to run fails again, and the other must not run it again
    at once, past the new backoff."""
    _access_request, (grant_id,) = provisioning_request(world)
    fleet.will(FleetError("Throttled"), FleetError("Throttled"))
    assert services.grant_provision(grant_id=grant_id) == Outcome(retry_in=5)
    time_machine.shift(timedelta(seconds=40))
    assert grant_id in stuck_work().to_provision
    assert services.grant_provision(grant_id=grant_id) == Outcome(retry_in=10)  # the sweep's delivery

    assert services.grant_provision(grant_id=grant_id) == Outcome()  # the retry's, a second later
    assert len(fleet.calls) == 2
    waiting = grant(grant_id)
    assert waiting.status == GrantStatus.PENDING and waiting.attempts == 2
    assert waiting.next_attempt_at == T0 + timedelta(seconds=50)

    time_machine.shift(timedelta(seconds=10))
    fleet.will(ok())
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.READY and len(fleet.calls) == 3
