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


@dataclass(frozen=True)
class SyncResult:
    account_id: str
    seen: int
    added: int
    gone: int
    errors: list[str]


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
    added = gone = seen = 0
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
        region_seen, region_added, region_gone, refused, region_retagged = item.value
        retagged += region_retagged
        seen, added, gone = seen + region_seen, added + region_added, gone + region_gone
        errors += refused
        news = news or bool(refused)
    if not errors:
        AwsAccount.objects.filter(pk=account.pk).update(inventory_synced_at=now)
    if retagged and settings.PASSPORT_IAM_CHECK:
        # The IAM gate is asked again, now, for every session open on them (terminal.services.iam_recheck).
        task_send_on_commit("iam_recheck_sessions", sorted(retagged))
    # A region that keeps failing is in the Logbook once (sweep.failed, when its streak began);
    # the scheduled sync does not repeat it every round. A person's sync is always recorded.
    if actor is not None or not errors or news:
        logbook_append(
            action="inventory.synced" if not errors else "inventory.sync_failed",
            actor=actor,
            account=account,
            detail={"seen": seen, "added": added, "gone": gone, "errors": errors},
        )
    return SyncResult(account_id=account.account_id, seen=seen, added=added, gone=gone, errors=errors)


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


def _sync_region(
    *, account: AwsAccount, fleet: Fleet, region: str, now: datetime
) -> tuple[int, int, int, list[str], list[int]]:
    """One region's rows brought in step; returns (seen, added, gone, refused ids as errors, the
    pks of the instances already known whose tags changed)."""
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
    added = 0
    known = dict(
        Instance.objects.filter(
            account=account, instance_id__in=[record.instance_id for record in records]
        ).values_list("instance_id", "tags")
    )
    retagged: list[int] = []
    for record in records:
        fields = _fields(record)
        instance, created = Instance.objects.update_or_create(
            account=account,
            instance_id=record.instance_id,
            defaults={**fields, "synced_at": now, "gone_at": None},
        )
        added += int(created)
        if not created and known.get(record.instance_id) != fields["tags"]:
            retagged.append(instance.pk)
    gone = (
        Instance.objects.filter(account=account, region=region, gone_at__isnull=True)
        .exclude(instance_id__in=[record.instance_id for record in records])
        .update(gone_at=now, ssm_managed=False, ping_status="")
    )
    return len(records), added, gone, errors, retagged
