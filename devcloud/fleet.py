"""moto's EC2 instances as Systems Manager sees them.

moto has no SSM agent, so "managed instance" facts (ping, agent version, platform) are
derived here from the EC2 instance and its ``devcloud:*`` tags. One function per question,
so the SSM handlers, the policy simulator and the local hosts agree on the answers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from moto.ec2.models import ec2_backends

from ssmchannel.messages import version_tuple

LATEST_AGENT_VERSION = "3.3.1142.0"

TAG_LOCAL = "devcloud:local"
TAG_MANAGED = "devcloud:managed"
TAG_AGENT_VERSION = "devcloud:agent-version"
TAG_PING_STATUS = "devcloud:ping-status"
TAG_PLATFORM = "devcloud:platform"
# "true": while its agent is not Online, SendCommand naming the instance is refused with
# InvalidInstanceId (as AWS does when the agent is stopped or restarting); otherwise the
# command is taken and stays Pending until the agent is back or the delivery times out.
TAG_OFFLINE_REFUSES = "devcloud:offline-refuses-commands"

ONLINE = "Online"
CONNECTION_LOST = "ConnectionLost"

# States in which an SSM agent is registered; the others have no managed instance at all.
_REGISTERED_STATES = {"running": ONLINE, "stopping": CONNECTION_LOST, "stopped": CONNECTION_LOST}


@dataclass(frozen=True)
class ManagedInstance:
    """One EC2 instance with its SSM agent's view of it."""

    instance_id: str
    account_id: str
    region: str
    name: str
    tags: dict[str, str]
    platform_type: str  # "Linux" | "Windows"
    platform_name: str
    platform_version: str
    ping_status: str
    last_ping: dt.datetime
    agent_version: str
    ip_address: str
    computer_name: str
    local: bool

    @property
    def online(self) -> bool:
        return self.ping_status == ONLINE

    @property
    def refuses_commands(self) -> bool:
        return not self.online and self.tags.get(TAG_OFFLINE_REFUSES, "").lower() == "true"

    @property
    def is_latest_version(self) -> bool:
        return version_tuple(self.agent_version) >= version_tuple(LATEST_AGENT_VERSION)

    @property
    def arn(self) -> str:
        return instance_arn(self.region, self.account_id, self.instance_id)


def instance_arn(region: str, account_id: str, instance_id: str) -> str:
    return f"arn:aws:ec2:{region}:{account_id}:instance/{instance_id}"


def managed_instances(account_id: str, region: str) -> list[ManagedInstance]:
    """Every instance of one account and region that has a registered SSM agent."""
    backend = ec2_backends[account_id][region]
    found = (_as_managed(backend, instance, account_id, region) for instance in list(backend.all_instances()))
    return [managed for managed in found if managed is not None]


def managed_instance(account_id: str, region: str, instance_id: str) -> ManagedInstance | None:
    backend = ec2_backends[account_id][region]
    for instance in list(backend.all_instances()):
        if instance.id == instance_id:
            return _as_managed(backend, instance, account_id, region)
    return None


def find_instance(instance_id: str) -> ManagedInstance | None:
    """Look an instance up in every account and region moto has created so far.

    Instance ids are unique across accounts, which lets the local hosts and the policy
    simulator work from an id or ARN alone.
    """
    for account_id, regions in list(ec2_backends.items()):
        for region, backend in list(regions.items()):
            for instance in list(backend.all_instances()):
                if instance.id == instance_id:
                    return _as_managed(backend, instance, account_id, region)
    return None


def instance_tags(account_id: str, region: str, instance_id: str) -> dict[str, str] | None:
    """The tags of an EC2 instance, or None when the instance does not exist."""
    if account_id not in ec2_backends or region not in ec2_backends[account_id]:
        return None
    backend = ec2_backends[account_id][region]
    if not any(instance.id == instance_id for instance in list(backend.all_instances())):
        return None
    return dict(backend.tags.get(instance_id, {}))


def _as_managed(backend: Any, instance: Any, account_id: str, region: str) -> ManagedInstance | None:
    tags: dict[str, str] = dict(backend.tags.get(instance.id, {}))
    ping_for_state = _REGISTERED_STATES.get(instance.state)
    if ping_for_state is None or tags.get(TAG_MANAGED, "").lower() == "false":
        return None
    ping_status = ping_for_state if ping_for_state != ONLINE else tags.get(TAG_PING_STATUS, ONLINE)
    windows = (instance.platform or "").lower() == "windows" or tags.get(TAG_PLATFORM, "").lower() == "windows"
    local = tags.get(TAG_LOCAL, "").lower() == "true" and not windows
    name = tags.get("Name", "")
    if windows:
        platform_name, platform_version = "Microsoft Windows Server 2022 Datacenter", "10.0.20348"
        # Windows picks "EC2AMAZ-" plus seven random characters; derive them to stay stable.
        computer_name = "EC2AMAZ-" + hashlib.sha256(instance.id.encode()).hexdigest()[:7].upper()
    elif local:
        platform_name, platform_version = _this_machine_os()
        computer_name = local_hostname(instance.id, name)
    else:
        platform_name, platform_version = "Amazon Linux", "2023"
        computer_name = instance.private_dns_name
    return ManagedInstance(
        instance_id=instance.id,
        account_id=account_id,
        region=region,
        name=name,
        tags=tags,
        platform_type="Windows" if windows else "Linux",
        platform_name=platform_name,
        platform_version=platform_version,
        ping_status=ping_status,
        # A live agent pings every few minutes; a lost one last pinged around its launch.
        last_ping=dt.datetime.now(dt.UTC) if ping_status == ONLINE else instance.launch_time.replace(tzinfo=dt.UTC),
        agent_version=tags.get(TAG_AGENT_VERSION, LATEST_AGENT_VERSION),
        ip_address=instance.private_ip or "",
        computer_name=computer_name,
        local=local,
    )


def local_hostname(instance_id: str, name_tag: str) -> str:
    """The hostname a local host reports: its Name tag made DNS-safe, else its id."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name_tag.lower()).strip("-")[:63]
    return cleaned or instance_id


@cache
def _this_machine_os() -> tuple[str, str]:
    """Local hosts really run on this machine, so they report its operating system."""
    fields: dict[str, str] = {}
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "Linux", ""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        fields[key] = value.strip('"')
    return fields.get("NAME", "Linux"), fields.get("VERSION_ID", "")
