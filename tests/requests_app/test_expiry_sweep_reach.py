"""The expiry sweep (``grants_needing_expiry_sync``) reaches every grant whose host is behind, however
many grants come before it that are in step already.

Its query finds the grants whose recorded host expiry is not their request's end to the moment; on
Linux most of those are in step (the account expires at a whole day: ``account_expiry_in_step``),
and stay so. Taking the first 500 of the query, then dropping those in step, would leave a grant
behind them out of every round once more than 500 such grants are live.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from requests_app import services
from requests_app.models import Grant, GrantStatus, Instance
from tests.conftest import World
from tests.factories import make_instance
from tests.requests_app.test_account_expiry import active_request

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
IN_STEP = 500  # the sweep's batch


pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


@pytest.fixture(autouse=True)
def frozen(time_machine: Any) -> Any:
    time_machine.move_to(T0, tick=False)
    return time_machine


def test_a_grant_behind_is_found_after_more_than_a_batch_of_grants_in_step(world: World) -> None:
    in_step, first_id = active_request(world, world.web)
    assert in_step.expires_at is not None
    # The host's expiry recorded a minute off the request's end: the same day, in step on Linux.
    Grant.objects.filter(pk=first_id).update(host_expires_at=in_step.expires_at - timedelta(minutes=1))
    hosts = Instance.objects.bulk_create(
        Instance(
            account=world.prod,
            instance_id=f"i-{0xBEEF0000 + n:017x}",
            region="us-east-1",
            name=f"bulk-{n}",
            platform=Instance.Platform.LINUX,
            state="running",
        )
        for n in range(IN_STEP)
    )
    template = Grant.objects.get(pk=first_id)
    Grant.objects.bulk_create(
        Grant(
            request=in_step,
            instance=host,
            username=template.username,
            platform=Instance.Platform.LINUX,
            status=GrantStatus.READY,
            ready_at=T0,
            host_expires_at=template.host_expires_at,
            key_expires_at=template.key_expires_at,
        )
        for host in hosts
    )
    behind_request, behind_id = active_request(world, make_instance(world.prod, "late-1"))
    assert behind_request.expires_at is not None
    # An extension whose task was lost: the host still expires the account a day early.
    Grant.objects.filter(pk=behind_id).update(host_expires_at=behind_request.expires_at - timedelta(days=1))

    assert services.grants_needing_expiry_sync() == [behind_id]
