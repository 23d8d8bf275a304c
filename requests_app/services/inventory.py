"""Keeping the instance inventory in step with EC2 and Systems Manager."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import AwsAccount, User
from audit.services import logbook_append
from requests_app.models import Instance
from workers.fleet import FleetError, InstanceRecord, fleet_for

DOMAIN_CONTROLLER_TAG = "PassportDomainController"


@dataclass(frozen=True)
class SyncResult:
    account_id: str
    seen: int
    added: int
    gone: int
    errors: list[str]


def _fields(record: InstanceRecord) -> dict[str, object]:
    return {
        "region": record.region,
        "name": record.name[:255],
        "state": record.state,
        "platform": record.platform,
        "platform_name": record.platform_name[:128],
        "private_ip": record.private_ip,
        "network_interfaces": record.network_interfaces,
        "tags": record.tags,
        "ssm_managed": record.ssm_managed,
        "ping_status": record.ping_status,
        "agent_version": record.agent_version,
        "last_ping_at": record.last_ping_at,
        "is_domain_controller": record.tags.get(DOMAIN_CONTROLLER_TAG, "").lower() == "true",
    }


def inventory_sync(*, account: AwsAccount, actor: User | None = None) -> SyncResult:
    """Refresh one account's instances in every region it lists. A region that fails keeps its old rows."""
    now = timezone.now()
    added = gone = seen = 0
    errors: list[str] = []
    fleet = fleet_for(account)
    for region in account.regions or []:
        try:
            records = fleet.describe(region)
        except FleetError as exc:
            errors.append(str(exc))
            continue
        seen += len(records)
        with transaction.atomic():
            for record in records:
                _, created = Instance.objects.update_or_create(
                    account=account,
                    instance_id=record.instance_id,
                    defaults={**_fields(record), "synced_at": now, "gone_at": None},
                )
                added += int(created)
            gone += (
                Instance.objects.filter(account=account, region=region, gone_at__isnull=True)
                .exclude(instance_id__in=[record.instance_id for record in records])
                .update(gone_at=now, ssm_managed=False, ping_status="")
            )
    if not errors:
        AwsAccount.objects.filter(pk=account.pk).update(inventory_synced_at=now)
    logbook_append(
        action="inventory.synced" if not errors else "inventory.sync_failed",
        actor=actor,
        account=account,
        detail={"seen": seen, "added": added, "gone": gone, "errors": errors},
    )
    return SyncResult(account_id=account.account_id, seen=seen, added=added, gone=gone, errors=errors)
