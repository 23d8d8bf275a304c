"""One person's two live requests on one Linux host share its user, whose expiry is the latest of
their ends (``account_expiry_for``). When the later one ends first, the user's expiry goes back to
the end of the one still holding it: the removal that keeps the user asks for it, and the sweep
finds it should that task be lost."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleet import CommandResult
from fleet.scripts import linux_expiry_date
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.services.leases import lease_length, lease_new_until
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, ok
from tests.requests_app.test_grant_lines_expiry import expiry_times, lines_written
from tests.requests_app.test_services import active, approved

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


@pytest.mark.usefixtures("queued")
def test_a_create_landing_after_its_request_ended_tells_the_grants_sharing_the_user(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    """The create of a request that ended while its script ran (the grant goes to removal, never
    ready) still wrote the shared user's expiry, its own request's later end: the other live grant
    of that user must not keep reading in step with its own earlier record."""
    time_machine.move_to(T0, tick=False)
    sibling = Grant.objects.get(request=active(world, duration=timedelta(hours=1)))
    assert services.grants_needing_expiry_sync() == []

    late = approved(world, duration=timedelta(hours=12))
    (grant_id,) = services.access_request_begin_provisioning(request_id=late.pk)

    def create_on_its_way(**kw: Any) -> CommandResult:
        late.refresh_from_db()
        services.access_request_complete(access_request=late, actor=world.requester)
        return ok("cmd-create-late")

    fleet.will(create_on_its_way)
    services.grant_provision(grant_id=grant_id)
    grant = Grant.objects.get(pk=grant_id)
    assert (grant.username, grant.instance_id) == (sibling.username, sibling.instance_id)
    assert grant.status != GrantStatus.READY
    assert expiry_written(fleet) == "2030-03-06"  # the user's expiry now: a day past the sibling's

    assert services.grants_needing_expiry_sync() == [sibling.pk]
    services.grant_sync_account_expiry(grant_id=sibling.pk)
    assert expiry_written(fleet) == "2030-03-05"
    assert services.grants_needing_expiry_sync() == []


@pytest.mark.usefixtures("queued")
def test_a_late_create_of_a_taken_over_grant_tells_the_grants_sharing_the_user(
    world: World, fleet: FakeFleet, time_machine: Any
) -> None:
    """A create whose lease ran out while it ran, the grant claimed by another worker meanwhile,
    settles nothing when it lands; it wrote the shared user's expiry all the same, so the other
    live grant of that user no longer knows the account's expiry, and is moved again."""
    time_machine.move_to(T0, tick=False)
    sibling = Grant.objects.get(request=active(world, duration=timedelta(hours=1)))
    late = approved(world, duration=timedelta(hours=12))
    (grant_id,) = services.access_request_begin_provisioning(request_id=late.pk)

    def create_on_its_way(**kw: Any) -> CommandResult:
        time_machine.shift(lease_length() + timedelta(seconds=1))
        assert services.grant_claim_for_provisioning(grant_id=grant_id, lease_until=lease_new_until())
        return ok("cmd-create-late")

    fleet.will(create_on_its_way)
    services.grant_provision(grant_id=grant_id)
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.PROVISIONING  # the other worker's
    assert expiry_written(fleet) == "2030-03-06"

    assert services.grants_needing_expiry_sync() == [sibling.pk]
    services.grant_sync_account_expiry(grant_id=sibling.pk)
    assert services.grants_needing_expiry_sync() == []
