"""Periodic sweeps isolate each item: a poison row is flagged and retried later, the others go on.

The failures are injected where they really happen: the database refuses one row (a trigger
raising, as a constraint or a broken row would), or the fleet raises FleetError. The sweeps
themselves run unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet import InstanceRecord
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus, SweepFailure
from tests.conftest import World
from tests.fakes.fleet import FakeFleet
from workers import tasks

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def test_environment(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PASSPORT_IAM_CHECK = False


def _refuse(table: str, condition: str) -> None:
    """A trigger that makes PostgreSQL refuse some rows' writes, the way a constraint would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION passport_test_poison() RETURNS trigger AS $$ BEGIN "
            f"IF {condition} THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER passport_test_poison BEFORE INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION passport_test_poison()"
        )


def _allow(table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS passport_test_poison ON {table}")
        cursor.execute("DROP FUNCTION IF EXISTS passport_test_poison()")


def _due(world: World, reason: str) -> AccessRequest:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason=reason
    )
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=T0 - timedelta(hours=1), expires_at=T0 - timedelta(minutes=5)
    )
    return access_request


def _status(access_request: AccessRequest) -> str:
    return AccessRequest.objects.get(pk=access_request.pk).status


def _flags(action: str) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action=action).order_by("id"))


def test_a_poison_request_does_not_stop_the_expiry_sweep(world: World, time_machine: Any, client: Client) -> None:
    time_machine.move_to(T0, tick=False)
    poison = _due(world, "first due, and the database refuses to end it")
    second = _due(world, "due after it")
    AccessRequest.objects.filter(pk=second.pk).update(expires_at=T0 - timedelta(minutes=1))
    assert services.due_for_expiry() == [poison.pk, second.pk]  # the poison sorts first
    _refuse("requests_app_accessrequest", f"NEW.id = {poison.pk} AND NEW.status = 'completing'")

    assert services.access_requests_expire_due() == 1
    assert _status(second) in (RequestStatus.COMPLETING, RequestStatus.EXPIRED)
    assert _status(poison) == RequestStatus.ACTIVE
    failure = SweepFailure.objects.get(kind=SweepFailure.Kind.EXPIRE, key=str(poison.pk))
    assert failure.failures == 1 and "poisoned row" in failure.last_error
    assert failure.next_attempt_at == T0 + timedelta(minutes=1)
    [flag] = _flags("sweep.failed")
    assert flag.request_id == poison.pk and flag.detail["kind"] == "request.expire"

    # The page says so, to the requester.
    client.force_login(world.requester)
    page = client.get(reverse("requests:detail", args=[poison.pk])).content.decode()
    assert 'data-testid="expiry-problem"' in page and "poisoned row" in page

    # Backing off: the next rounds leave it out instead of failing on it again.
    assert services.due_for_expiry() == []
    assert services.access_requests_expire_due() == 0
    assert SweepFailure.objects.get(pk=failure.pk).failures == 1

    # Past the backoff it is tried again: a second failure doubles the wait, the Logbook is not told twice.
    time_machine.move_to(T0 + timedelta(minutes=1), tick=False)
    assert services.access_requests_expire_due() == 0
    failure.refresh_from_db()
    assert failure.failures == 2 and failure.next_attempt_at == T0 + timedelta(minutes=3)
    assert len(_flags("sweep.failed")) == 1

    # Once the database takes it, it expires and the streak ends, in the Logbook too.
    _allow("requests_app_accessrequest")
    time_machine.move_to(T0 + timedelta(minutes=3), tick=False)
    assert services.access_requests_expire_due() == 1
    assert _status(poison) in (RequestStatus.COMPLETING, RequestStatus.EXPIRED)
    assert not SweepFailure.objects.exists()
    [recovered] = _flags("sweep.recovered")
    assert recovered.request_id == poison.pk and recovered.detail["failures"] == 2


def test_the_backoff_doubles_and_stops_at_an_hour() -> None:
    assert [services.sweeps.sweep_backoff(n) for n in (1, 2, 3, 7, 8, 20)] == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(hours=1),
        timedelta(hours=1),
        timedelta(hours=1),
    ]


def _two_regions(account: AwsAccount) -> None:
    AwsAccount.objects.filter(pk=account.pk).update(regions=["eu-west-1", "us-east-1"])
    account.refresh_from_db()


def test_a_region_the_database_refuses_does_not_stop_the_inventory_sync(
    world: World, fake_fleet: FakeFleet, client: Client
) -> None:
    _two_regions(world.prod)
    poison_id, good_id = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"
    fake_fleet.holds(
        [
            InstanceRecord(instance_id=poison_id, region="eu-west-1", name="poison"),
            InstanceRecord(instance_id="i-0aaaaaaaaaaaaaaa3", region="eu-west-1", name="same-region"),
            InstanceRecord(instance_id=good_id, region="us-east-1", name="good"),
        ]
    )
    _refuse("requests_app_instance", f"NEW.instance_id = '{poison_id}'")

    result = services.inventory_sync(account=world.prod)
    assert fake_fleet.describes == ["eu-west-1", "us-east-1"]
    assert result.errors and "poisoned row" in result.errors[0]
    assert world.prod.instances.filter(instance_id=good_id).exists()
    # The failing region's transaction is rolled back whole: it keeps its old rows.
    assert not world.prod.instances.filter(region="eu-west-1").exists()
    failure = SweepFailure.objects.get(kind=SweepFailure.Kind.INVENTORY, key=f"{world.prod.pk}:eu-west-1")
    assert failure.failures == 1
    assert len(_flags("sweep.failed")) == 1 and len(_flags("inventory.sync_failed")) == 1

    # The scheduled sync runs again: still failing, counted, but the Logbook is not flooded.
    services.inventory_sync(account=world.prod)
    assert SweepFailure.objects.get(pk=failure.pk).failures == 2
    assert len(_flags("sweep.failed")) == 1 and len(_flags("inventory.sync_failed")) == 1

    # The scheduled sync leaves the failing region out while it backs off; the others go on.
    fake_fleet.describes.clear()
    assert tasks.sync_inventory(world.prod.pk)["errors"] == ["eu-west-1: failing; waiting before the next try"]
    assert fake_fleet.describes == ["us-east-1"]
    assert SweepFailure.objects.get(pk=failure.pk).failures == 2
    assert len(_flags("inventory.sync_failed")) == 1

    client.force_login(world.approver)
    page = client.get(reverse("requests:inventory")).content.decode()
    assert 'data-testid="inventory-problem"' in page and "poisoned row" in page

    _allow("requests_app_instance")
    assert services.inventory_sync(account=world.prod).errors == []
    assert world.prod.instances.filter(instance_id=poison_id).exists()
    assert not SweepFailure.objects.exists() and len(_flags("sweep.recovered")) == 1


def test_a_fleet_error_in_one_account_does_not_stop_the_others(
    world: World, fake_fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduled sync hands each account out on its own; FleetError is caught per region."""
    fake_fleet.failing = True
    result = services.inventory_sync(account=world.prod)
    assert result.errors == ["us-east-1: AccessDenied"]
    assert SweepFailure.objects.filter(kind=SweepFailure.Kind.INVENTORY).count() == 1
    fake_fleet.failing = False
    fake_fleet.holds([InstanceRecord(instance_id="i-0ccccccccccccccc4", region="us-east-1", name="back")])
    assert services.inventory_sync(account=world.staging).errors == []
    assert world.staging.instances.filter(instance_id="i-0ccccccccccccccc4").exists()


def test_the_sweep_records_the_failure_before_going_on() -> None:
    """A failing item's row moves on in its own transaction; the next item still runs."""
    ran: list[int] = []

    def work(object_id: int) -> None:
        ran.append(object_id)
        if object_id == 1:
            AccessRequest.objects.create()  # refused by the database: no requester
        return None

    assert services.sweep_each(kind=SweepFailure.Kind.RESUME_APPROVED, ids=[1, 2], work=work) == 1
    assert ran == [1, 2]
    assert SweepFailure.objects.get().key == "1"
    assert services.sweep_each(kind=SweepFailure.Kind.RESUME_APPROVED, ids=[1, 2], work=work) == 1
    assert ran == [1, 2, 2]  # 1 is backing off
    assert timezone.now() < SweepFailure.objects.get().next_attempt_at


def test_a_queued_sync_names_nobody_whoever_the_message_says(world: World, fake_fleet: FakeFleet) -> None:
    """Anyone who reaches the broker can write the task's arguments: the old second one, a person
    to record as having synced, is ignored, and the sync is the scheduled one (backoff and all)."""
    fake_fleet.holds([InstanceRecord(instance_id="i-0ccccccccccccccc1", region="us-east-1", name="web")])

    assert tasks.sync_inventory(world.prod.pk, world.approver.pk)["seen"] == 1

    entry = LogbookEntry.objects.get(action="inventory.synced")
    assert entry.actor is None
    assert not LogbookEntry.objects.filter(actor=world.approver).exists()
