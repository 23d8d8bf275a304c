"""Inventory sync takes what EC2 and Systems Manager say as hostile: ids are checked, text is kept storable,
and a Name is kept as it came but offered as an ssh Host alias only when it is one."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet import InstanceRecord
from requests_app import services
from requests_app.models import Instance
from requests_app.services import inventory_sync
from requests_app.services.inventory import INSTANCE_IDS_NAMED
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet

GOOD_ID = "i-0123456789abcdef0"


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def _sync(fake_fleet: FakeFleet, account: AwsAccount, records: list[InstanceRecord]) -> list[str]:
    fake_fleet.holds(records)
    return inventory_sync(account=account).errors


def test_an_id_that_is_not_an_instance_id_is_refused_and_the_rest_synced(world: World, fake_fleet: FakeFleet) -> None:
    hostile = ["../../etc/passwd", "i-0123456789abcdef0\nx", "i-1; reboot", "-oProxyCommand=x"]
    records = [InstanceRecord(instance_id=GOOD_ID, region="us-east-1", name="new-1")] + [
        InstanceRecord(instance_id=instance_id, region="us-east-1", name="evil") for instance_id in hostile
    ]
    errors = _sync(fake_fleet, world.prod, records)
    assert len(errors) == len(hostile) and all("not an instance id" in error for error in errors)
    assert Instance.objects.filter(account=world.prod, gone_at__isnull=True).get().instance_id == GOOD_ID
    assert not Instance.objects.filter(name="evil").exists()
    entry = LogbookEntry.objects.filter(action="inventory.sync_failed").get()
    assert entry.detail["errors"] == errors


def test_text_from_the_cloud_is_kept_storable_and_names_are_kept_as_they_came(
    world: World, fake_fleet: FakeFleet
) -> None:
    name = "web-1\n  ProxyCommand sh -c 'id' \x1b]52;c;eA==\x07 \u202e" + "w" * 300
    record = InstanceRecord(
        instance_id=GOOD_ID,
        region="us-east-1",
        name="nul\x00" + name,
        state="running\x00" + "x" * 40,
        agent_version="3.3.1142.0" + "9" * 40,  # what the instance's own agent reports
        ping_status="Online\x00",
        platform_name="Amazon Linux\x00",
        private_ip="10.0.0.1\x00",
        tags={"Name\x00": "x\x00y", "PassportDomainController": "false"},
        network_interfaces=[{"id": "eni-1\x00", "private_ip": "10.0.0.1"}],
    )
    assert _sync(fake_fleet, world.prod, [record]) == []  # PostgreSQL refuses NUL: one tag must not stop a sync
    stored = Instance.objects.get(account=world.prod, instance_id=GOOD_ID)
    assert stored.name == ("nul\ufffd" + name)[:255]
    assert stored.state == ("running\ufffd" + "x" * 40)[:32] and len(stored.agent_version) == 32
    assert stored.ping_status == "Online\ufffd" and stored.tags == {
        "Name\ufffd": "x\ufffdy",
        "PassportDomainController": "false",
    }
    assert stored.network_interfaces == [{"id": "eni-1\ufffd", "private_ip": "10.0.0.1"}]
    assert not stored.name_is_host_alias


@pytest.mark.parametrize(
    ("name", "alias"),
    [("web-1", True), ("db.internal", True), ("Web Server 1", False), ("a%h", False), ("*", False), ("", False)],
)
def test_the_api_says_whether_a_name_may_be_an_ssh_host_alias(
    world: World, client: APIClient, name: str, alias: bool
) -> None:
    Instance.objects.filter(pk=world.web.pk).update(name=name)
    client.force_authenticate(world.requester)
    rows = client.get("/api/accounts/111111111111/instances/").json()["results"]
    assert next(row for row in rows if row["instance_id"] == world.web.instance_id)["name_is_host_alias"] is alias
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="check"
    )
    grant = client.get(f"/api/requests/{access_request.pk}/").json()["grants"][0]
    assert grant["name"] == name and grant["name_is_host_alias"] is alias


def test_only_a_windows_instance_is_a_domain_controller_whatever_its_tags_say(
    world: World, fake_fleet: FakeFleet
) -> None:
    """``PassportDomainController`` (anyone with ec2:CreateTags sets it) means a domain account and
    Domain Admins, which a Linux host has not: there it is kept as a tag and means nothing."""
    tagged = {"PassportDomainController": "true"}
    linux = InstanceRecord(instance_id="i-0000000000000000a", region="us-east-1", platform="linux", tags=tagged)
    windows = InstanceRecord(instance_id="i-0000000000000000b", region="us-east-1", platform="windows", tags=tagged)

    assert _sync(fake_fleet, world.prod, [linux, windows]) == []

    stored = {instance.instance_id: instance for instance in Instance.objects.filter(account=world.prod)}
    assert stored[linux.instance_id].is_domain_controller is False
    assert stored[linux.instance_id].tags == tagged
    assert stored[windows.instance_id].is_domain_controller is True


def test_a_cloud_listing_thousands_of_bad_ids_is_one_bounded_logbook_entry(world: World, fake_fleet: FakeFleet) -> None:
    """One error line per refused id would put whatever the cloud lists into one Logbook entry (and
    the page's message): the first few are named, the rest counted."""
    bad = [f"bad-{number}" for number in range(5_000)]
    records = [InstanceRecord(instance_id=GOOD_ID, region="us-east-1")] + [
        InstanceRecord(instance_id=instance_id, region="us-east-1") for instance_id in bad
    ]
    errors = _sync(fake_fleet, world.prod, records)
    assert len(errors) <= 11, len(errors)
    assert errors[0] == "us-east-1: refused 'bad-0', which is not an instance id"
    assert errors[-1] == "us-east-1: 4990 more ids refused that are not instance ids (not listed)"
    entry = LogbookEntry.objects.filter(action="inventory.sync_failed").get()
    assert entry.detail["errors"] == errors
    assert Instance.objects.filter(account=world.prod, gone_at__isnull=True).get().instance_id == GOOD_ID


def _listed(account: AwsAccount) -> list[InstanceRecord]:
    """The account's instances in us-east-1 as the cloud lists them now: unchanged."""
    return [
        InstanceRecord(
            instance_id=instance.instance_id,
            region=instance.region,
            platform=instance.platform,
            tags={"PassportDomainController": "true"} if instance.is_domain_controller else {},
        )
        for instance in Instance.objects.filter(account=account, region="us-east-1", gone_at__isnull=True)
    ]


def _kind(platform: str, domain_controller: bool) -> dict[str, object]:
    return {"platform": platform, "domain_controller": domain_controller}


def test_the_sync_records_which_instances_came_went_and_changed_kind(world: World, fake_fleet: FakeFleet) -> None:
    """Which instances became requestable, which left, and which turned into another kind of host
    (a Linux host now a Windows domain controller: other usernames, Domain Admins) are on record,
    by id, in the entry's instance ids and its detail."""
    returning = make_instance(world.prod, "old-1", gone_at=timezone.now())
    new_id = "i-0fedcba9876543210"
    dc = {"PassportDomainController": "true"}
    records = [
        replace(record, platform="windows", tags=dc)
        if record.instance_id == world.web.instance_id
        else replace(record, tags=dc)
        if record.instance_id == world.windows.instance_id
        else record
        for record in _listed(world.prod)
        if record.instance_id != world.db.instance_id
    ]
    records += [
        InstanceRecord(instance_id=new_id, region="us-east-1"),
        InstanceRecord(instance_id=returning.instance_id, region="us-east-1"),
    ]

    assert _sync(fake_fleet, world.prod, records) == []

    entry = LogbookEntry.objects.get(action="inventory.synced")
    changed = sorted([world.web.instance_id, world.windows.instance_id])
    assert entry.detail == {
        "seen": len(records),
        "added": 1,
        "gone": 1,
        "errors": [],
        "added_ids": [new_id],
        "gone_ids": [world.db.instance_id],
        "returned_ids": [returning.instance_id],
        "kind_changed": [
            {
                "instance_id": instance_id,
                "before": _kind("linux", False) if instance_id == world.web.instance_id else _kind("windows", False),
                "after": _kind("windows", True),
            }
            for instance_id in changed
        ],
    }
    assert entry.instance_id_list == sorted([new_id, world.db.instance_id, returning.instance_id, *changed])


def test_a_sync_that_changes_nothing_names_no_instance(world: World, fake_fleet: FakeFleet) -> None:
    records = _listed(world.prod)
    assert _sync(fake_fleet, world.prod, records) == []
    entry = LogbookEntry.objects.get(action="inventory.synced")
    assert entry.detail == {
        "seen": len(records),
        "added": 0,
        "gone": 0,
        "errors": [],
        "added_ids": [],
        "gone_ids": [],
        "returned_ids": [],
        "kind_changed": [],
    }
    assert entry.instance_id_list == []


def test_instances_past_the_named_many_are_counted(world: World, fake_fleet: FakeFleet) -> None:
    """A scale-out of hundreds is one bounded entry: the first few ids (in order) named, the rest counted."""
    new = [f"i-{number:017x}" for number in range(0xA0000, 0xA0000 + INSTANCE_IDS_NAMED + 5)]
    records = [InstanceRecord(instance_id=instance_id, region="us-east-1") for instance_id in new]
    assert _sync(fake_fleet, world.prod, _listed(world.prod) + records) == []
    entry = LogbookEntry.objects.get(action="inventory.synced")
    assert entry.detail["added"] == INSTANCE_IDS_NAMED + 5
    assert entry.detail["added_ids"] == new[:INSTANCE_IDS_NAMED]
    assert entry.detail["added_ids_not_named"] == 5
    assert entry.instance_id_list == new[:INSTANCE_IDS_NAMED]
    assert "gone_ids_not_named" not in entry.detail
