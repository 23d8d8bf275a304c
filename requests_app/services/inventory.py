"""Keeping the instance inventory in step with EC2 and Systems Manager."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import AwsAccount, User
from audit.services import logbook_append
from core.dispatch import task_send_on_commit
from fleet import Fleet, FleetError, InstanceRecord, fleet_for
from passport_cli.names import is_instance_id
from requests_app.models import Instance, SweepFailure
from requests_app.services.sweeps import SweepItemFailed, sweep_backed_off, sweep_run

DOMAIN_CONTROLLER_TAG = "PassportDomainController"
# A person's sync still marked running after this long is taken to have died with its process.
SYNC_LEASE = timedelta(minutes=10)
# Ids a region's listing had that are not instance ids: this many are named in the sync's errors (its
# Logbook entry, the page's message), the rest counted. A hostile cloud may list any number.
REFUSED_IDS_NAMED = 10
# Instances a sync added, found gone, found back, or found changed in kind: this many of each (by id)
# are named in its Logbook entry (detail and instance ids), the rest counted (``added_ids_not_named``...).
# Four lists of 20 ids fit the entry's instance ids column (2,000 characters) with room to spare.
INSTANCE_IDS_NAMED = 20


@dataclass(frozen=True)
class SyncResult:
    account_id: str
    seen: int
    added: int
    gone: int
    errors: list[str]


@dataclass
class _RegionSync:
    """What one region's sync saw and changed; the ids by what happened to them."""

    seen: int
    added: list[str]
    gone: list[str]
    returned: list[str]  # known, gone, and listed again
    kind_changed: list[dict[str, Any]]  # {"instance_id", "before", "after"}: platform, domain controller
    refused: list[str]  # ids that are not instance ids, as errors
    retagged: list[int]  # pks of the instances already known whose tags changed


def _kind(platform: str, domain_controller: bool) -> dict[str, Any]:
    return {"platform": platform, "domain_controller": domain_controller}


def _sync_record(
    *, seen: int, added: list[str], gone: list[str], returned: list[str], kind_changed: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[str]]:
    """The Logbook entry's detail (without errors) and instance ids: the counts, and of each list the
    first ``INSTANCE_IDS_NAMED`` by id, the rest counted in ``<list>_not_named``."""
    detail: dict[str, Any] = {"seen": seen, "added": len(added), "gone": len(gone)}
    named: set[str] = set()
    lists: tuple[tuple[str, list[Any]], ...] = (
        ("added_ids", sorted(added)),
        ("gone_ids", sorted(gone)),
        ("returned_ids", sorted(returned)),
        ("kind_changed", sorted(kind_changed, key=lambda item: item["instance_id"])),
    )
    for key, items in lists:
        detail[key] = items[:INSTANCE_IDS_NAMED]
        named.update(item if isinstance(item, str) else item["instance_id"] for item in detail[key])
        if len(items) > INSTANCE_IDS_NAMED:
            detail[f"{key}_not_named"] = len(items) - INSTANCE_IDS_NAMED
    return detail, sorted(named)


def _text(value: object, limit: int) -> str:
    """Text from the cloud as a column can hold it: NUL (PostgreSQL refuses it) replaced, cut to the column's size.

    Anything else is kept as it came (a Name with spaces is a good Name); each sink escapes
    or refuses it: pages autoescape, the CLI prints it escaped and uses it as an ssh alias
    only when it matches ``passport_cli.names.HOST_ALIAS_RE`` (``Instance.name_is_host_alias``).
    """
    return str(value or "").replace("\x00", "\ufffd")[:limit]


def _json(value: Any) -> Any:
    """Tags and network interfaces without NUL, which PostgreSQL's jsonb refuses as well."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_json(str(key)): _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value


def _fields(record: InstanceRecord) -> dict[str, object]:
    return {
        "region": record.region,
        "name": _text(record.name, 255),
        "state": _text(record.state, 32),
        "platform": record.platform,
        "platform_name": _text(record.platform_name, 128),
        "private_ip": _text(record.private_ip, 64),
        "network_interfaces": _json(record.network_interfaces),
        "tags": _json(record.tags),
        "ssm_managed": record.ssm_managed,
        "ping_status": _text(record.ping_status, 32),
        "agent_version": _text(record.agent_version, 32),
        "last_ping_at": record.last_ping_at,
        "is_domain_controller": _is_domain_controller(record),
    }


def _is_domain_controller(record: InstanceRecord) -> bool:
    """Whether the instance is a domain controller: its ``PassportDomainController`` tag, on a Windows
    instance only. A Linux host has no domain accounts nor Domain Admins for the flag to mean, and a
    grant of one marked so could never settle once the instance is gone (a domain user is left on the
    domain's other controllers); the tag stays in ``tags``, shown as any other."""
    return record.platform == Instance.Platform.WINDOWS and record.tags.get(DOMAIN_CONTROLLER_TAG, "").lower() == "true"


def inventory_sync(*, account: AwsAccount, actor: User | None = None, skip_backing_off: bool = False) -> SyncResult:
    """Refresh one account's instances in every region it lists. A region that fails keeps its old rows.

    With ``skip_backing_off`` (the scheduled sync), a region that failed recently waits out its
    backoff; a person's sync tries every region.
    """
    now = timezone.now()
    seen = 0
    added: list[str] = []
    gone: list[str] = []
    returned: list[str] = []
    kind_changed: list[dict[str, Any]] = []
    errors: list[str] = []
    news = False  # something the Logbook has not heard yet
    retagged: list[int] = []  # instances whose tags changed: an IAM condition on them may now refuse
    fleet = fleet_for(account)
    backing_off = sweep_backed_off(kind=SweepFailure.Kind.INVENTORY) if skip_backing_off else set()
    for region in account.regions or []:
        if _region_key(account, region) in backing_off:
            errors.append(f"{region}: failing; waiting before the next try")
            continue
        # Each region on its own transaction: one that fails (the fleet's FleetError, or a row
        # the database refuses) keeps its old rows, is flagged once per failure streak, and the
        # regions after it are still synced.
        item = sweep_run(
            kind=SweepFailure.Kind.INVENTORY,
            key=_region_key(account, region),
            account=account,
            work=partial(_sync_region, account=account, fleet=fleet, region=region, now=now),
        )
        if item.value is None:
            errors.append(item.error)
            news = news or item.streak_began
            continue
        synced: _RegionSync = item.value
        retagged += synced.retagged
        seen += synced.seen
        added += synced.added
        gone += synced.gone
        returned += synced.returned
        kind_changed += synced.kind_changed
        errors += synced.refused
        news = news or bool(synced.refused)
    if not errors:
        AwsAccount.objects.filter(pk=account.pk).update(inventory_synced_at=now)
    if retagged and settings.PASSPORT_IAM_CHECK:
        # The IAM gate is asked again, now, for every session open on them (terminal.services.iam_recheck).
        task_send_on_commit("iam_recheck_sessions", sorted(retagged))
    # A region that keeps failing is in the Logbook once (sweep.failed, when its streak began);
    # the scheduled sync does not repeat it every round. A person's sync is always recorded. The entry
    # names, by id, which instances came, went, came back or changed kind (a Linux host now a Windows
    # domain controller: other usernames, Domain Admins).
    if actor is not None or not errors or news:
        detail, instance_ids = _sync_record(
            seen=seen, added=added, gone=gone, returned=returned, kind_changed=kind_changed
        )
        logbook_append(
            action="inventory.synced" if not errors else "inventory.sync_failed",
            actor=actor,
            account=account,
            instance_ids=instance_ids,
            detail={**detail, "errors": errors},
        )
    return SyncResult(account_id=account.account_id, seen=seen, added=len(added), gone=len(gone), errors=errors)


class InventorySyncTooSoon(Exception):
    """A person's sync not started: another is running, or the last one ended within the cooldown."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after  # seconds


def inventory_sync_by_person(*, account: AwsAccount, actor: User) -> SyncResult:
    """A person's sync (the inventory page's button, the API): one at a time per account, and the
    next only ``PASSPORT_INVENTORY_SYNC_COOLDOWN_SECONDS`` after the last one ended.

    Each sync calls every region's DescribeInstances, updates every instance's row and writes a
    Logbook entry: a second click while one runs, or a loop, would repeat all of it for nothing
    new. Claimed by a conditional UPDATE on the account's row, so two processes cannot both start
    one. Raises ``InventorySyncTooSoon``, which says why and when to try again.
    """
    cooldown = timedelta(seconds=settings.PASSPORT_INVENTORY_SYNC_COOLDOWN_SECONDS)
    now = timezone.now()
    free = (
        Q(inventory_sync_started_at__isnull=True)
        # The last one ended long ago, or died with its process.
        | Q(inventory_sync_started_at__lte=now - max(SYNC_LEASE, cooldown))
        | Q(inventory_sync_ended_at__gte=F("inventory_sync_started_at"), inventory_sync_ended_at__lte=now - cooldown)
    )
    if not AwsAccount.objects.filter(free, pk=account.pk).update(inventory_sync_started_at=now):
        raise _sync_too_soon(account, now=now, cooldown=cooldown)
    try:
        return inventory_sync(account=account, actor=actor)
    finally:
        AwsAccount.objects.filter(pk=account.pk, inventory_sync_started_at=now).update(
            inventory_sync_ended_at=timezone.now()
        )


def _sync_too_soon(account: AwsAccount, *, now: datetime, cooldown: timedelta) -> InventorySyncTooSoon:
    started, ended = (
        AwsAccount.objects.filter(pk=account.pk)
        .values_list("inventory_sync_started_at", "inventory_sync_ended_at")
        .get()
    )
    if started is not None and (ended is None or ended < started):
        return InventorySyncTooSoon(
            f"A sync of {account.name}'s inventory started {_seconds((now - started).total_seconds())} ago "
            "and is still running: its result shows on the inventory page when it ends.",
            retry_after=max(1, math.ceil(cooldown.total_seconds())),
        )
    ago = (now - ended).total_seconds() if ended is not None else 0.0
    wait = max(1, math.ceil(cooldown.total_seconds() - ago))
    return InventorySyncTooSoon(
        f"{account.name}'s inventory was synced {_seconds(ago)} ago: sync again in {_seconds(wait)}.",
        retry_after=wait,
    )


def _seconds(value: float) -> str:
    count = max(0, int(value))
    return "1 second" if count == 1 else f"{count} seconds"


def _region_key(account: AwsAccount, region: str) -> str:
    return f"{account.pk}:{region}"[:96]


def _sync_region(*, account: AwsAccount, fleet: Fleet, region: str, now: datetime) -> _RegionSync:
    """One region's rows brought in step; returns what it saw and changed."""
    try:
        records = fleet.describe(region)
    except FleetError as exc:
        raise SweepItemFailed(str(exc)) from exc
    # The id goes into Run Command targets, URLs, file names and ssh configs: one that is not an id is refused.
    refused = [record.instance_id for record in records if not is_instance_id(record.instance_id)]
    errors = [
        f"{region}: refused {instance_id[:80]!r}, which is not an instance id"
        for instance_id in refused[:REFUSED_IDS_NAMED]
    ]
    if len(refused) > REFUSED_IDS_NAMED:
        errors.append(
            f"{region}: {len(refused) - REFUSED_IDS_NAMED} more ids refused that are not instance ids (not listed)"
        )
    records = [record for record in records if is_instance_id(record.instance_id)]
    listed = {record.instance_id for record in records}
    # Every existing row this transaction writes (those listed, in any region, and the region's live
    # rows, some now gone) locked FOR UPDATE in one query, by pk, before any is written: asking for
    # access locks its hosts' rows by pk too (``lifecycle.create``), so the two wait for each other in
    # one order, never in a circle. Locked one by one in EC2's order, a sync holding one host's row and
    # waiting for another's deadlocked with a request holding the second and waiting for the first.
    locked = (
        Instance.objects.select_for_update()
        .filter(Q(instance_id__in=listed) | Q(region=region, gone_at__isnull=True), account=account)
        .order_by("pk")
        .values_list("pk", "instance_id", "region", "tags", "platform", "is_domain_controller", "gone_at")
    )
    known: dict[str, tuple[Any, dict[str, Any], bool]] = {}
    leaving: dict[int, str] = {}  # pk: instance id, the region's live rows EC2 no longer lists
    for pk, instance_id, row_region, tags, platform, domain_controller, gone_at in locked:
        if instance_id in listed:
            known[instance_id] = (tags, _kind(platform, domain_controller), gone_at is not None)
        elif row_region == region and gone_at is None:
            leaving[pk] = instance_id
    result = _RegionSync(
        seen=len(records), added=[], gone=[], returned=[], kind_changed=[], refused=errors, retagged=[]
    )
    for record in records:
        fields = _fields(record)
        instance, created = Instance.objects.update_or_create(
            account=account,
            instance_id=record.instance_id,
            defaults={**fields, "synced_at": now, "gone_at": None},
        )
        if created:
            result.added.append(record.instance_id)
            continue
        if record.instance_id not in known:  # made by another sync since we looked: tags unknown
            result.retagged.append(instance.pk)
            continue
        tags, kind, was_gone = known[record.instance_id]
        if tags != fields["tags"]:
            result.retagged.append(instance.pk)
        if was_gone:
            result.returned.append(record.instance_id)
        after = _kind(str(fields["platform"]), bool(fields["is_domain_controller"]))
        if kind != after:
            result.kind_changed.append({"instance_id": record.instance_id, "before": kind, "after": after})
    # Locked above, then marked: the ids marked gone are the ids named.
    Instance.objects.filter(pk__in=leaving).update(gone_at=now, ssm_managed=False, ping_status="")
    result.gone = list(leaving.values())
    return result
