"""Forward destinations stored before EC2's own addresses were refused (core.destinations
``EC2_INSTANCE_ADDRESSES``: instance metadata, Amazon DNS, Time Sync, Windows activation) are taken
off the accounts that list them. Nothing used them since that change (``valid_destinations`` leaves
them out), but the hosts of grants made before kept ``permitopen`` for them, and a grant's lines are
rewritten only once its account's stored list differs from the one they were written with: this
makes it differ, so the next refresh writes lines without them."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.db import migrations

# As core.destinations has them when this was written (a migration keeps its own copy).
REFUSED = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",
        "fd00:ec2::254",
        "169.254.169.253",
        "fd00:ec2::253",
        "169.254.169.123",
        "fd00:ec2::123",
        "169.254.169.250",
        "169.254.169.251",
        "fd00:ec2::240",
    )
)


def _refused(destination: object) -> bool:
    if not isinstance(destination, str) or ":" not in destination:
        return False
    host = destination.rsplit(":", 1)[0].strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in REFUSED


def forget_refused_destinations(apps: Any, schema_editor: Any) -> None:
    AwsAccount = apps.get_model("accounts", "AwsAccount")
    for account in AwsAccount.objects.exclude(forward_destinations=[]).only("pk", "forward_destinations"):
        stored = account.forward_destinations
        if not isinstance(stored, list):
            continue
        kept = [destination for destination in stored if not _refused(destination)]
        if kept != stored:
            AwsAccount.objects.filter(pk=account.pk).update(forward_destinations=kept)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0029_account_regions_validated")]

    operations = [migrations.RunPython(forget_refused_destinations, migrations.RunPython.noop)]
