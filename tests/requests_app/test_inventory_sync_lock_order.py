"""Asking for access and the inventory sync, each on its own PostgreSQL connection, as two processes.

Asking for access (``access_request_create``) holds the rows of the hosts it asks for, by pk, FOR NO
KEY UPDATE. A region's sync writes the same rows in one transaction. It used to lock them one by one
as it wrote them, in the order EC2 lists them and the rows of hosts no longer listed last: a sync
holding the row of a host with a higher pk and coming to one with a lower pk waited for a request
holding the lower and waiting for the higher, and PostgreSQL aborted one of the two (a deadlock: the
request failed with a 500, or the region's sync failed). Both now take them by pk.

Each test holds the sync inside its region's transaction, just before it writes a chosen record,
starts the request, waits until PostgreSQL shows someone waiting for a lock, then lets the sync go:
both must succeed, one after the other. The race helpers are ``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

import pytest

from fleet import InstanceRecord
from requests_app import services
from requests_app.models import AccessRequest, Instance
from requests_app.services import inventory
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.conftest import World
from tests.fakes.fleet import FakeFleet


def _record(instance: Instance) -> InstanceRecord:
    return InstanceRecord(
        instance_id=instance.instance_id,
        region=instance.region,
        name=instance.name,
        state="running",
        platform=instance.platform,
        tags={**instance.tags, "Seen": "sync"},
        ssm_managed=True,
        ping_status="Online",
        agent_version=instance.agent_version,
    )


def _sync_held_before_writing(world: World, held_at: Instance, monkeypatch: pytest.MonkeyPatch) -> tuple[Side, Hold]:
    """The sync started, and stopped in its region's transaction before it writes ``held_at``'s row
    (the records EC2 listed before it already written); returns it and the hold that lets it go on."""
    hold = Hold(inventory._fields)

    def fields(record: InstanceRecord) -> dict[str, object]:
        return hold(record) if record.instance_id == held_at.instance_id else hold.original(record)

    monkeypatch.setattr(inventory, "_fields", fields)
    sync = Side(lambda: services.inventory_sync(account=world.prod))
    sync.start()
    hold.wait(sync)
    return sync, hold


def _both_done(sync: Side, ask: Side, hold: Hold) -> AccessRequest:
    """Lets the sync go once the request waits for a lock; both must end without an error."""
    wait_for_a_lock_waiter(unless_done=ask)
    hold.release.set()
    result = sync.finish()
    access_request = ask.finish()
    assert result.errors == []
    assert isinstance(access_request, AccessRequest)
    return access_request


def test_a_request_for_two_hosts_and_a_sync_listing_them_in_the_other_order_do_not_deadlock(
    world: World, fake_fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    low, high = sorted([world.web, world.db], key=lambda instance: instance.pk)
    others = Instance.objects.filter(account=world.prod, region=low.region).exclude(pk__in=[low.pk, high.pk])
    # EC2 lists the higher pk first (its own order, not the portal's).
    fake_fleet.holds([_record(high), _record(low), *map(_record, others)])
    sync, hold = _sync_held_before_writing(world, low, monkeypatch)
    ask = Side(
        lambda: services.access_request_create(
            requester=world.requester, account=world.prod, instances=[low, high], reason="deploy"
        )
    )
    ask.start()

    access_request = _both_done(sync, ask, hold)

    assert sorted(access_request.grants.values_list("instance_id", flat=True)) == [low.pk, high.pk]
    assert set(Instance.objects.filter(pk__in=[low.pk, high.pk]).values_list("tags__Seen", "gone_at")) == {
        ("sync", None)
    }


def test_a_request_for_a_host_the_sync_finds_gone_and_one_it_lists_do_not_deadlock(
    world: World, fake_fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaving, kept = sorted([world.web, world.db], key=lambda instance: instance.pk)
    others = list(
        Instance.objects.filter(account=world.prod, region=leaving.region).exclude(pk__in=[leaving.pk, kept.pk])
    )
    # EC2 no longer lists the lower pk; the sync writes the higher one, then the others, then marks
    # the missing rows gone.
    fake_fleet.holds([_record(kept), *map(_record, others)])
    sync, hold = _sync_held_before_writing(world, others[0], monkeypatch)
    ask = Side(
        lambda: services.access_request_create(
            requester=world.requester, account=world.prod, instances=[leaving, kept], reason="deploy"
        )
    )
    ask.start()

    access_request = _both_done(sync, ask, hold)

    assert sorted(access_request.grants.values_list("instance_id", flat=True)) == [leaving.pk, kept.pk]
    leaving.refresh_from_db()
    kept.refresh_from_db()
    assert leaving.gone_at is not None
    assert (kept.gone_at, kept.tags.get("Seen")) == (None, "sync")
