"""Keeping the instance inventory in step with EC2 and Systems Manager."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import AwsAccount, User
from audit.services import logbook_append
from passport_cli.names import is_instance_id
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
        # The id goes into Run Command targets, URLs, file names and ssh configs: one that is not an id is refused.
        refused = [record.instance_id for record in records if not is_instance_id(record.instance_id)]
        errors += [f"{region}: refused {instance_id[:80]!r}, which is not an instance id" for instance_id in refused]
        records = [record for record in records if is_instance_id(record.instance_id)]
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
