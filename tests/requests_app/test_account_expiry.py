"""The OS account's own expiry on each host: the request's end, and moved when the end moves.

``fleet_for`` is replaced by ``FakeFleet`` (Systems Manager only), the Celery queue by a
recorder; the services, the scripts they render and the database are the real ones.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audit.models import LogbookEntry
from fleet import CommandResult, FleetError
from requests_app import services
from requests_app.models import AccessRequest, Grant, Instance, RequestStatus
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet, created, failed, ok

# Past noon: a day and a half from now (the expiry before) is two calendar days on, the end's next day one.
T0 = datetime(2030, 3, 4, 13, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


@pytest.fixture(autouse=True)
def frozen(time_machine: Any) -> Any:
    time_machine.move_to(T0, tick=False)
    return time_machine


def active_request(world: World, instance: Instance, *, hours: int = 1) -> tuple[AccessRequest, int]:
    access_request = services.access_request_create(
        requester=world.requester,
        account=world.prod,
        instances=[instance],
        reason="Patch the kernel",
        duration=timedelta(hours=hours),
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    services.grant_provision(grant_id=grant_id)
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.ACTIVE
    return access_request, grant_id


def actions(access_request: AccessRequest) -> list[str]:
    return list(
        LogbookEntry.objects.filter(request_id=access_request.pk).order_by("id").values_list("action", flat=True)
    )


def parse_exact(script: str) -> list[str]:
    """The moments the script hands to [datetime]::ParseExact, as written."""
    return re.findall(
        r"\[datetime\]::ParseExact\('([^']*)', 'o', \[Globalization\.CultureInfo\]::InvariantCulture", script
    )


# --- Windows --------------------------------------------------------------------------


def test_the_windows_account_expires_at_the_requests_end_read_the_same_in_every_culture(
    world: World, fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        access_request, grant_id = active_request(world, world.windows)

    script = fleet.calls[0]["script"]
    assert access_request.expires_at == T0 + timedelta(hours=1)
    assert parse_exact(script) == ["2030-03-04T14:00:00.0000000Z"]
    assert "[Globalization.DateTimeStyles]::RoundtripKind" in script
    assert "[datetime]::Parse(" not in script  # no parse that follows the host's culture
    assert "-AccountExpires $expires" in script
    # What the host was told is what the request says: nothing more to move.
    assert Grant.objects.get(pk=grant_id).host_expires_at == access_request.expires_at
    assert ("sync_grant_expiry", grant_id) not in queued
    assert services.grants_needing_expiry_sync() == []


def test_an_extension_moves_the_windows_accounts_expiry_and_nothing_else(
    world: World, fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    access_request, grant_id = active_request(world, world.windows)
    sealed = Grant.objects.get(pk=grant_id).password_sealed
    fleet.calls.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))

    assert ("sync_grant_expiry", grant_id) in queued
    assert services.grants_needing_expiry_sync() == [grant_id]
    assert services.grant_sync_account_expiry(grant_id=grant_id) == services.Outcome()

    (call,) = fleet.calls
    script = call["script"]
    assert parse_exact(script) == ["2030-03-04T16:00:00.0000000Z"]
    assert "Set-LocalUser -SID $account.SID -AccountExpires $expires" in script
    # No new password, no group, no enabling: an extension moves the expiry only.
    assert "Get-SSMParameter" not in script and "-Password" not in script
    assert "Add-LocalGroupMember" not in script and "Enable-LocalUser" not in script
    assert "if ($account.Description -ne $marker) {" in script
    assert Grant.objects.get(pk=grant_id).password_sealed == sealed
    assert Grant.objects.get(pk=grant_id).host_expires_at == T0 + timedelta(hours=3)
    entry = LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.expiry_moved").get()
    extended = LogbookEntry.objects.filter(request_id=access_request.pk, action="request.extended").get()
    assert entry.detail["expires_at"] == extended.detail["expires_at"]
    # Done once: the sweep finds nothing, and another run sends nothing.
    assert services.grants_needing_expiry_sync() == []
    assert services.grant_sync_account_expiry(grant_id=grant_id) == services.Outcome()
    assert len(fleet.calls) == 1


def test_a_domain_controllers_account_expiry_moves_on_the_domain_user(world: World, fleet: FakeFleet) -> None:
    dc = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    access_request, grant_id = active_request(world, dc)
    assert "New-ADUser" in fleet.calls[0]["script"] and "-AccountExpirationDate $expires" in fleet.calls[0]["script"]
    assert parse_exact(fleet.calls[0]["script"]) == ["2030-03-04T14:00:00.0000000Z"]
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(minutes=30))

    services.grant_sync_account_expiry(grant_id=grant_id)

    script = fleet.calls[-1]["script"]
    assert "if ('yes' -eq 'yes')" in script
    assert "Set-ADUser -Identity $account.SID.Value -AccountExpirationDate $expires" in script
    assert parse_exact(script) == ["2030-03-04T14:30:00.0000000Z"]


@pytest.mark.parametrize("failure", [failed(exit_code=9, stderr="passport: no user here"), FleetError("Throttled")])
def test_a_move_that_fails_is_on_record_and_tried_again(
    world: World, fleet: FakeFleet, failure: CommandResult | FleetError
) -> None:
    access_request, grant_id = active_request(world, world.windows)
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    fleet.will(failure)

    outcome = services.grant_sync_account_expiry(grant_id=grant_id)

    assert outcome.retry_in is not None
    entry = LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.expiry_move_failed").get()
    assert entry.detail["error"]
    # The host still has the old end, and the periodic sweep knows it.
    assert Grant.objects.get(pk=grant_id).host_expires_at == T0 + timedelta(hours=1)
    assert services.grants_needing_expiry_sync() == [grant_id]
    fleet.will(ok())
    assert services.grant_sync_account_expiry(grant_id=grant_id) == services.Outcome()
    assert services.grants_needing_expiry_sync() == []


def test_a_grant_whose_script_ran_long_gets_the_end_its_request_started_with(
    world: World, fleet: FakeFleet, queued: list[tuple[str, int]], frozen: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The clock starts when the first grant is ready, after its script ran: the script wrote the
    earliest end it could know, and the host is told the real one at once."""

    def slow(**kw: Any) -> CommandResult:
        frozen.shift(timedelta(minutes=3))
        return created()

    fleet.will(slow)
    with django_capture_on_commit_callbacks(execute=True):
        access_request, grant_id = active_request(world, world.windows)

    assert access_request.expires_at == T0 + timedelta(hours=1, minutes=3)
    assert parse_exact(fleet.calls[0]["script"]) == ["2030-03-04T14:00:00.0000000Z"]
    assert ("sync_grant_expiry", grant_id) in queued
    services.grant_sync_account_expiry(grant_id=grant_id)
    assert parse_exact(fleet.calls[-1]["script"]) == ["2030-03-04T14:03:00.0000000Z"]


def test_an_ended_requests_grant_is_not_moved(world: World, fleet: FakeFleet) -> None:
    access_request, grant_id = active_request(world, world.windows)
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    services.access_request_complete(access_request=access_request, actor=world.requester)
    fleet.calls.clear()

    assert services.grant_sync_account_expiry(grant_id=grant_id) == services.Outcome()
    assert fleet.calls == []


# --- Linux ----------------------------------------------------------------------------


def test_the_linux_account_expires_the_day_after_the_requests_end_in_utc(world: World, fleet: FakeFleet) -> None:
    active_request(world, world.web)
    script = fleet.calls[0]["script"]
    # Ends 2030-03-04 14:00 UTC: refused from 2030-03-05 00:00 UTC, however the host's clock is zoned.
    assert "TZ=UTC0 usermod --password '*' --expiredate '2030-03-05' \"$user\"" in script


def test_an_extension_past_midnight_moves_the_linux_accounts_expiry_day(
    world: World, fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    access_request, grant_id = active_request(world, world.web, hours=8)  # ends 21:00
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(minutes=30))
    # Still the same day: the whole-day expiry is already right, but the grant's lines stop taking
    # certificates at the request's end to the minute, and are moved to the new one.
    assert services.grants_needing_expiry_sync() == [grant_id]
    assert services.grant_sync_account_expiry(grant_id=grant_id) == services.Outcome()
    assert len(fleet.calls) == 2
    assert "--expiredate '2030-03-05'" in fleet.calls[-1]["script"]
    assert services.grants_needing_expiry_sync() == []

    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=3))

    assert ("sync_grant_expiry", grant_id) in queued
    assert services.grants_needing_expiry_sync() == [grant_id]
    services.grant_sync_account_expiry(grant_id=grant_id)
    assert "--expiredate '2030-03-06'" in fleet.calls[-1]["script"]
    assert services.grants_needing_expiry_sync() == []
