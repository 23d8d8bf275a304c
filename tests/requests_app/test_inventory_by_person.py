"""A person's inventory sync (the API and the inventory page's button; services.inventory_sync_by_person):
one at a time per account, the next only a cooldown after the last one ended. Sooner, the API answers
429 with Retry-After and the page says when; a sync asked for while one runs is told so and does not
run the cloud's calls again. The scheduled sync is apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from fleet import InstanceRecord
from requests_app import services
from tests.conftest import World
from tests.factories import make_membership, make_user
from tests.fakes.fleet import FakeFleet

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)
SYNC = "/api/accounts/111111111111/sync/"


@pytest.fixture(autouse=True)
def frozen(settings: Any, time_machine: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PASSPORT_INVENTORY_SYNC_COOLDOWN_SECONDS = 60
    time_machine.move_to(T0, tick=False)


@pytest.fixture
def api(world: World) -> APIClient:
    client = APIClient()
    client.force_authenticate(world.approver)
    return client


def synced() -> int:
    return LogbookEntry.objects.filter(action="inventory.synced").count()


def test_thirty_syncs_in_a_row_run_once_and_the_rest_are_told_when(
    world: World, fake_fleet: FakeFleet, api: APIClient, time_machine: Any
) -> None:
    assert api.post(SYNC).status_code == 200
    describes = len(fake_fleet.describes)
    assert describes == len(world.prod.regions)
    time_machine.move_to(T0 + timedelta(seconds=20), tick=False)
    answers = [api.post(SYNC) for _ in range(29)]
    assert {answer.status_code for answer in answers} == {429}
    assert answers[0]["Retry-After"] == "40"
    assert answers[0].json() == {
        "detail": "Acme Production's inventory was synced 20 seconds ago: sync again in 40 seconds."
    }
    assert len(fake_fleet.describes) == describes and synced() == 1
    # Another approver is held to the same account's cooldown; another account is not.
    other = make_user("olga")
    make_membership(other, world.prod, "admin", can_approve=True)
    make_membership(other, world.staging, "admin", can_approve=True)
    by_other = APIClient()
    by_other.force_authenticate(other)
    assert by_other.post(SYNC).status_code == 429
    assert by_other.post("/api/accounts/222222222222/sync/").status_code == 200
    # Once the cooldown has passed, the next sync runs.
    time_machine.move_to(T0 + timedelta(seconds=60), tick=False)
    assert api.post(SYNC).status_code == 200
    assert synced() == 3


def test_a_sync_asked_for_while_one_runs_is_told_it_runs_and_repeats_nothing(
    world: World, fake_fleet: FakeFleet, api: APIClient
) -> None:
    fake_fleet.holds([InstanceRecord(instance_id="i-0123456789abcdef0", region="us-east-1", name="new-1")])
    answered_meanwhile: list[Any] = []
    describe = fake_fleet.describe

    def describe_while_another_asks(region: str) -> list[InstanceRecord]:
        if not answered_meanwhile:  # mid-sync, the approver clicks again (another process would see the same row)
            answered_meanwhile.append(api.post(SYNC))
        return describe(region)

    fake_fleet.describe = describe_while_another_asks  # type: ignore[method-assign]
    assert api.post(SYNC).status_code == 200
    meanwhile = answered_meanwhile[0]
    assert meanwhile.status_code == 429 and meanwhile["Retry-After"] == "60"
    assert meanwhile.json() == {
        "detail": "A sync of Acme Production's inventory started 0 seconds ago and is still running: "
        "its result shows on the inventory page when it ends."
    }
    assert fake_fleet.describes.count("us-east-1") == 1 and synced() == 1


def test_the_pages_sync_button_is_held_to_the_same_cooldown(
    world: World, fake_fleet: FakeFleet, api: APIClient, time_machine: Any
) -> None:
    page = Client()
    page.force_login(world.approver)
    url = reverse("requests:inventory_sync", args=[world.prod.pk])
    first = page.post(url, follow=True).content.decode()
    assert "Acme Production: " in first and "instances seen" in first
    time_machine.move_to(T0 + timedelta(seconds=5), tick=False)
    second = page.post(url, follow=True).content.decode()
    assert "Acme Production&#x27;s inventory was synced 5 seconds ago: sync again in 55 seconds." in second
    # The API and the page share it.
    assert api.post(SYNC).status_code == 429
    assert synced() == 1


def test_a_sync_that_failed_still_starts_the_cooldown_and_the_scheduled_sync_is_not_held(
    world: World, fake_fleet: FakeFleet, api: APIClient
) -> None:
    fake_fleet.failing = True
    assert api.post(SYNC).json()["errors"] == ["us-east-1: AccessDenied"]
    assert api.post(SYNC).status_code == 429
    fake_fleet.failing = False
    # A sync no person asked for (the workers' scheduled one, load_demo's) is not held by it.
    describes = len(fake_fleet.describes)
    assert services.inventory_sync(account=world.prod).errors == []
    assert len(fake_fleet.describes) == describes + 1
