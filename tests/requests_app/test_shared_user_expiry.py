"""One person's two live requests on one Linux host share its user, whose expiry is the latest of
their ends (``account_expiry_for``). When the later one ends first, the user's expiry goes back to
the end of the one still holding it: the removal that keeps the user asks for it, and the sweep
finds it should that task be lost."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleet.scripts import linux_expiry_date
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from tests.conftest import World
from tests.fakes.fleet import FakeFleet
from tests.requests_app.test_grant_lines_expiry import expiry_times, lines_written
from tests.requests_app.test_services import active

pytestmark = pytest.mark.usefixtures("service_settings", "fleet")

T0 = datetime(2030, 3, 4, 13, 0, tzinfo=UTC)


def expiry_written(fleet: FakeFleet) -> str:
    """The day the last script sent set the user's expiry to."""
    dates = [
        date for call in fleet.calls for date in re.findall(r"--expiredate '(\d{4}-\d\d-\d\d)'", call.get("script", ""))
    ]
    assert dates
    return dates[-1]


@pytest.fixture
def two_requests(world: World, fleet: FakeFleet, time_machine: Any) -> tuple[AccessRequest, AccessRequest]:
    """The first ends 21:00 on day D, then is extended past midnight (its sync writes D+2 on the
    shared user); the second ends 23:00 on D (its user's expiry D+1). Then the first is completed."""
    time_machine.move_to(T0, tick=False)
    first = active(world, duration=timedelta(hours=8))
    second = active(world, duration=timedelta(hours=10))
    assert Grant.objects.get(request=first).username == Grant.objects.get(request=second).username
    services.access_request_extend(access_request=first, actor=world.requester, by=timedelta(hours=4))
    services.grant_sync_account_expiry(grant_id=Grant.objects.get(request=first).pk)
    assert expiry_written(fleet) == "2030-03-06"
    time_machine.move_to(T0 + timedelta(hours=1), tick=False)
    services.access_request_complete(access_request=first, actor=world.requester)
    second.refresh_from_db()
    assert second.status == RequestStatus.ACTIVE
    return first, second


@pytest.mark.usefixtures("queued")
def test_the_sweep_moves_the_shared_users_expiry_back_once_the_later_request_ended(
    two_requests: tuple[AccessRequest, AccessRequest], fleet: FakeFleet
) -> None:
    _, second = two_requests
    second_grant = Grant.objects.get(request=second)

    assert services.grants_needing_expiry_sync() == [second_grant.pk]
    services.grant_sync_account_expiry(grant_id=second_grant.pk)

    assert second.expires_at is not None
    assert expiry_written(fleet) == linux_expiry_date(second.expires_at).isoformat() == "2030-03-05"
    assert expiry_times(lines_written(fleet)) == {"203003042300Z"}  # its own lines, at its own end
    assert services.grants_needing_expiry_sync() == []


def test_the_removal_that_keeps_the_user_asks_for_the_expiry_of_the_grants_it_is_kept_for(
    two_requests: tuple[AccessRequest, AccessRequest],
    fleet: FakeFleet,
    queued: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    first, second = two_requests
    first_grant, second_grant = Grant.objects.get(request=first), Grant.objects.get(request=second)
    queued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.grant_deprovision(grant_id=first_grant.pk)

    assert Grant.objects.get(pk=first_grant.pk).status == GrantStatus.REMOVED
    assert ("sync_grant_expiry", second_grant.pk) in queued
    services.grant_sync_account_expiry(grant_id=second_grant.pk)
    assert expiry_written(fleet) == "2030-03-05"


@pytest.mark.usefixtures("queued")
def test_a_user_shared_with_a_later_request_keeps_its_later_expiry_while_that_one_lives(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    first = active(world, duration=timedelta(hours=8))
    second = active(world, duration=timedelta(hours=10))
    services.access_request_extend(access_request=first, actor=world.requester, by=timedelta(hours=4))
    services.grant_sync_account_expiry(grant_id=Grant.objects.get(request=first).pk)
    calls = len(fleet.calls)

    # Both live: the second's grant records the later expiry on its user, and is in step with it.
    assert Grant.objects.get(request=second).host_expires_at == T0 + timedelta(hours=12)
    assert services.grants_needing_expiry_sync() == []
    assert len(fleet.calls) == calls
