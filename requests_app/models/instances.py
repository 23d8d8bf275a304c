"""The inventory cache of EC2 instances, and how the pages and the Logbook name a kind of host."""

from __future__ import annotations

from django.db import models

from accounts.models import AwsAccount
from core.text import visible
from fleet.arns import instance_arn
from passport_cli.names import is_host_alias


class Instance(models.Model):
    """Inventory cache of one EC2 instance and its Systems Manager state."""

    class Platform(models.TextChoices):
        LINUX = "linux", "Linux"
        WINDOWS = "windows", "Windows"

    account = models.ForeignKey(AwsAccount, on_delete=models.CASCADE, related_name="instances")
    instance_id = models.CharField(max_length=32)
    region = models.CharField(max_length=32)
    name = models.CharField(max_length=255, blank=True)
    platform = models.CharField(max_length=16, choices=Platform.choices, default=Platform.LINUX)
    platform_name = models.CharField(max_length=128, blank=True)
    state = models.CharField(max_length=32, blank=True, help_text="EC2 state: running, stopped ...")
    is_domain_controller = models.BooleanField(default=False)
    ssm_managed = models.BooleanField(default=False)
    ping_status = models.CharField(max_length=32, blank=True)
    agent_version = models.CharField(max_length=32, blank=True)
    private_ip = models.CharField(max_length=64, blank=True)
    network_interfaces = models.JSONField(default=list)
    tags = models.JSONField(default=dict)
    last_ping_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    # Set when a sync no longer finds the instance; kept for the history of old requests.
    gone_at = models.DateTimeField(null=True, blank=True)
    # Reconciliation: when the host's short-lived users were last compared with live grants,
    # and what went wrong the last time it could not be done (shown on the inventory page).
    reconciled_at = models.DateTimeField(null=True, blank=True)
    reconcile_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name", "instance_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "instance_id"], name="instance_unique_per_account"),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """How a sentence names the instance: its id, and its Name tag (anyone with ec2:CreateTags
        writes it) with every hidden or reordering character as an escape (``core.text.visible``), so
        a refusal or message that quotes it reads the same on a page, in the API and in a terminal."""
        return f"{self.instance_id} ({visible(self.name)})" if self.name else self.instance_id

    @property
    def arn(self) -> str:
        return instance_arn(region=self.region, account_id=self.account.account_id, instance_id=self.instance_id)

    @property
    def name_is_host_alias(self) -> bool:
        """Whether the Name tag (anyone with ec2:CreateTags writes it) may be an ssh Host alias in the CLI's config."""
        return is_host_alias(self.name)


def host_kind_label(*, platform: str, domain_controller: bool) -> str:
    """A kind of host as the Logbook and the pages say it: ``Linux``, ``Windows member server`` or
    ``Windows domain controller``."""
    if platform == Instance.Platform.WINDOWS:
        return "Windows domain controller" if domain_controller else "Windows member server"
    return "Linux" if platform == Instance.Platform.LINUX else "unknown platform"
