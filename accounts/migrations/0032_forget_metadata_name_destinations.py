"""Forward destinations stored before the names that lead to EC2's own addresses were refused
(core.destinations ``names_ec2_instance_address``: ``instance-data``, ``instance-data.ec2.internal``,
``169.254.169.254.nip.io`` and the like) are taken off the accounts that list them, as 0030 did for
the addresses themselves: nothing has used them since (``valid_destinations`` leaves them out), but
the hosts of grants made before kept ``permitopen`` for them, and a grant's lines are rewritten only
once its account's stored list differs from the one they were written with."""

from __future__ import annotations

import ipaddress
import re
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


def _address(text: str) -> Any:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _refused(destination: object) -> bool:
    if not isinstance(destination, str) or ":" not in destination or destination.startswith("["):
        return False
    name = destination.rsplit(":", 1)[0].lower().removesuffix(".")
    if _address(name) is not None:
        return False  # an address: 0030's
    labels = name.split(".")
    if labels[0] == "instance-data" and (len(labels) == 1 or labels[-1] == "internal"):
        return True
    parts = re.split(r"[.-]", name)
    if any(_address(".".join(parts[start : start + 4])) in REFUSED for start in range(len(parts) - 3)):
        return True
    if any(re.fullmatch(r"[0-9a-f]{8}", part) and ipaddress.IPv4Address(int(part, 16)) in REFUSED for part in parts):
        return True
    return any("-" in label and _address(label.replace("-", ":")) in REFUSED for label in labels)


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
    dependencies = [("accounts", "0031_validators_whole_value")]

    operations = [migrations.RunPython(forget_refused_destinations, migrations.RunPython.noop)]
