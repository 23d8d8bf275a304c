from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts import permissions
from accounts.models import AwsAccount
from core.destinations import valid_destinations
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


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    PROVISIONING = "provisioning", "Provisioning"
    ACTIVE = "active", "Active"
    COMPLETING = "completing", "Cleaning up"
    COMPLETED = "completed", "Completed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Failed"

    @property
    def is_terminal(self) -> bool:
        """Nothing more happens to the request."""
        return self in _TERMINAL_REQUEST

    @property
    def is_live(self) -> bool:
        """Approved and not yet ending: access exists or is being set up, so it can be completed."""
        return self in _LIVE_REQUEST

    @property
    def tone(self) -> str:
        """The badge colour the pages show it in (``static/css/passport.css``: ``.badge-tone-<tone>``)."""
        return _REQUEST_TONE[self]


_TERMINAL_REQUEST = frozenset({"completed", "rejected", "cancelled", "expired", "failed"})
_LIVE_REQUEST = frozenset({"approved", "provisioning", "active"})
_REQUEST_TONE = {
    "pending": "warn",
    "approved": "warn",
    "provisioning": "info",
    "active": "ok",
    "completing": "info",
    "completed": "muted",
    "rejected": "bad",
    "cancelled": "muted",
    "expired": "muted",
    "failed": "bad",
}

# What an approver's note may hold. The request keeps all of it (so do the Logbook and, of several
# approvals, each one's row: ``accounts.RequestApproval.note``), so a longer note is refused, never cut.
DECISION_NOTE_MAX = 256

TERMINAL_REQUEST_STATUSES = tuple(status for status in RequestStatus if status.is_terminal)
LIVE_REQUEST_STATUSES = tuple(status for status in RequestStatus if status.is_live)


class EndReason(models.TextChoices):
    COMPLETED = "completed", "Completed by a person"
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Provisioning failed"
    # The requester no longer holds the Admin role on the account (lowered or removed by an
    # admin, or by the identity provider at a sign-in): only Admin may have access.
    REVOKED = "revoked", "Revoked: the requester is no longer an Admin of the account"


class AccessRequestQuerySet(models.QuerySet["AccessRequest"]):
    def visible_to(self, user: Any) -> AccessRequestQuerySet:
        """The requests this person may see (``accounts.permissions.access_request_visibility``)."""
        return self.filter(permissions.access_request_visibility(user))


class AccessRequest(models.Model):
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests")
    account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="access_requests")
    # The AWS account id its account named when the request was made: its users are made there, and
    # the fleet never acts for it in another (``provisioning.common.request_fleet``), whatever the
    # account's row says later. "" when not known (a row made other than by ``access_request_create``).
    # The database's default too: the release before this column's makes requests without it while
    # a rolling deploy runs (migration 0016), and they are "" as well.
    aws_account_id = models.CharField(max_length=12, blank=True, default="", db_default="", editable=False)
    instances: models.ManyToManyField[Instance, Grant] = models.ManyToManyField(
        Instance, through="Grant", related_name="access_requests"
    )
    reason = models.CharField(max_length=256)
    ticket = models.CharField(max_length=64, blank=True)
    admin_rights = models.BooleanField(
        default=False,
        verbose_name="Administrator rights",
        help_text="Linux: sudo; Windows: local Administrators, or the domain's admin group on a domain controller.",
    )
    duration = models.DurationField(default=timedelta(hours=1))
    # The account's forwarding destinations when the request was made (``AwsAccount.forward_destinations``):
    # what the approver was shown ``ssh -L`` reaches beyond the instance. An admin's later addition
    # never widens it; a removal narrows it (``destinations_in_force``).
    forward_destinations = models.JSONField(default=list, editable=False)
    extended_by = models.DurationField(default=timedelta(0))
    status = models.CharField(
        max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING, db_index=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decision_note = models.CharField(max_length=DECISION_NOTE_MAX, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The latest expiry of the AWS credentials issued for the request (``access_request_issue_aws_credentials``):
    # STS cannot revoke them, so until then they may start sessions after an early end, which the
    # sweep of ``provisioning.sessions`` looks for. None when none were issued.
    aws_credentials_until = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AccessRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["requester", "-created_at"], name="request_requester_recent"),
            models.Index(fields=["account", "status"], name="request_account_status"),
            models.Index(fields=["expires_at"], name="request_active_expiry", condition=Q(status="active")),
        ]

    def __str__(self) -> str:
        return f"Request #{self.pk}"

    @property
    def total_duration(self) -> timedelta:
        return self.duration + self.extended_by

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_REQUEST_STATUSES

    @property
    def approved_destinations(self) -> tuple[str, ...]:
        """The forwarding destinations recorded when the request was made (what approval covers)."""
        return valid_destinations(self.forward_destinations)

    @property
    def destinations_in_force(self) -> tuple[str, ...]:
        """What ``ssh -L`` may reach beyond the instance now: recorded with the request and still on the account."""
        still_open = set(self.account.forward_destination_list)
        return tuple(destination for destination in self.approved_destinations if destination in still_open)

    @property
    def approved_automatically(self) -> bool:
        """Approved by the account's policy, no person deciding (``decided_by`` stays empty)."""
        return self.decided_at is not None and self.decided_by_id is None


class GrantStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    PROVISIONING = "provisioning", "Provisioning"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    REMOVING = "removing", "Removing"
    REMOVED = "removed", "Removed"

    @property
    def needs_cleanup(self) -> bool:
        """The grant may have left something on the instance."""
        return self in _GRANT_NEEDING_CLEANUP

    @property
    def tone(self) -> str:
        """The badge colour the pages show it in."""
        return _GRANT_TONE[self]


_GRANT_NEEDING_CLEANUP = frozenset({"provisioning", "ready", "failed", "removing"})
_GRANT_TONE = {
    "pending": "warn",
    "provisioning": "info",
    "ready": "ok",
    "failed": "bad",
    "removing": "info",
    "removed": "muted",
}

GRANT_STATES_NEEDING_CLEANUP = tuple(status for status in GrantStatus if status.needs_cleanup)


class GrantQuerySet(models.QuerySet["Grant"]):
    def update(self, **kwargs: object) -> int:
        # Every state change goes through a conditional update(), which skips auto_now;
        # the sweep's grace period is measured from updated_at, so keep it true here.
        kwargs.setdefault("updated_at", timezone.now())
        return super().update(**kwargs)

    def visible_to(self, user: Any) -> GrantQuerySet:
        """The grants of the requests this person may see."""
        return self.filter(request__in=AccessRequest.objects.visible_to(user))


class Grant(models.Model):
    """One instance of a request: the short-lived user there and how far it got."""

    # Names this grant on the hosts (the removal tombstone), unique across every installation and database.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="grants")
    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="grants")
    username = models.CharField(max_length=20)
    # The instance's platform when the request was made: what the approver was shown Administrator
    # rights mean there (sudo, or Administrators), and the kind of user every script of the grant
    # makes, keeps and removes. The instance's own platform is what the latest inventory sync said;
    # provisioning refuses a grant whose instance no longer matches, and removal always undoes
    # what this platform made (``provisioning.common.host_kind_change``).
    # A grant made without one (by the release before this column's, during a rolling deploy) gets its
    # instance's on PostgreSQL, as the grants made before it did (migration 0016's trigger).
    platform = models.CharField(max_length=16, choices=Instance.Platform.choices, db_default="", editable=False)
    # Windows: whether the instance was a domain controller when the request was made: what the
    # approver was shown Administrator rights mean there (Domain Admins, not Administrators), the
    # kind of user made (a domain account, its name suffixed) and removed. The instance's own flag
    # comes from a tag anyone with ec2:CreateTags may change; provisioning refuses a grant whose
    # instance no longer matches, as for the platform. Never set on a Linux grant (and ignored on
    # one made before that was so: ``domain_account``).
    domain_controller = models.BooleanField(default=False, editable=False)
    status = models.CharField(max_length=16, choices=GrantStatus.choices, default=GrantStatus.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    cleanup_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    command_ids = models.JSONField(default=list)
    # Windows: the generated password, sealed (core.sealing.seal); wiped when the request ends.
    password_sealed = models.BinaryField(null=True, blank=True, editable=False)
    # A worker holds a grant until this time; past it, the claim is considered abandoned
    # (worker killed) and the grant may be claimed again.
    lease_until = models.DateTimeField(null=True, blank=True)
    # When a failed attempt may be retried; the periodic sweep re-queues grants past it.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    # Linux: the host's authorized_keys trusts certificates for this grant's principal. False only
    # for grants made before certificates were bound to grants; a periodic task rewrites them.
    keys_bound = models.BooleanField(default=True, editable=False)
    # Linux: the account's extra forwarding ports as they were when the host's lines were last
    # written (their permitopen options); None before lines limited forwards. The same periodic
    # task rewrites the lines of a grant whose account's ports are no longer these.
    key_forward_ports = models.JSONField(null=True, default=None, editable=False)
    # The request end the host's OS account was last set to expire at (a second lock should
    # removal not run; on Linux the day after it); None when unknown. A grant whose host is
    # behind its request's end (an extension) is told again (provisioning.expiry).
    host_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Linux: the account's forwarding destinations as they were when the lines were last written
    # (with the request's own, ``AccessRequest.destinations_in_force``): rewritten in the same way.
    key_forward_destinations = models.JSONField(default=list, editable=False)
    # Linux: the fingerprints (sorted) of the CA keys the host's lines were last written with; None
    # when not known (grants from before this was kept, or a script that landed with keys the CA
    # had changed meanwhile). The same periodic task rewrites the lines of a grant whose keys are not
    # the CA's active and trusted keys of now: a rotation or retirement while a script was on its
    # way, which the refresh it queued missed (``provisioning.common._ca_keys_written``).
    key_ca_fingerprints = models.JSONField(null=True, default=None, editable=False)
    removed_at = models.DateTimeField(null=True, blank=True)
    # Session Manager sessions of this grant's ended access that removal could not end (AWS would
    # not list or end them): when the sweep tries again (``provisioning.sessions``). None when none
    # is known to be left.
    sessions_end_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The tries so far at those sessions, removal's included: the sweep backs off by it.
    sessions_end_attempts = models.PositiveIntegerField(default=0, editable=False)
    # The failure of those tries the Logbook last heard (the call and AWS's error codes): a try
    # that fails the same way is not written again. Empty when none is known to be left.
    sessions_end_error = models.TextField(blank=True, default="", editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "instance"], name="grant_unique_instance_per_request")
        ]
        # The sweep's look-up: only the few grants with sessions still to end are in it.
        indexes = [
            models.Index(
                fields=["sessions_end_at"], name="grant_sessions_end_due", condition=Q(sessions_end_at__isnull=False)
            )
        ]

    def __str__(self) -> str:
        return f"{self.username}@{self.instance.instance_id}"

    @property
    def domain_account(self) -> bool:
        """The user is a domain account: a Windows grant made for a domain controller. A Linux host
        is never one, whatever its tag said (grants made before the tag was kept to Windows)."""
        return self.platform == Instance.Platform.WINDOWS and self.domain_controller

    @property
    def host_kind(self) -> str:
        """What the grant's instance was when the request was made, as the Logbook says it."""
        return host_kind_label(platform=self.platform, domain_controller=self.domain_account)


def host_kind_label(*, platform: str, domain_controller: bool) -> str:
    """A kind of host as the Logbook and the pages say it: ``Linux``, ``Windows member server`` or
    ``Windows domain controller``."""
    if platform == Instance.Platform.WINDOWS:
        return "Windows domain controller" if domain_controller else "Windows member server"
    return "Linux" if platform == Instance.Platform.LINUX else "unknown platform"


class SweepFailure(models.Model):
    """One item a periodic task could not handle: why, how often in a row, and when to try again.

    A row exists only while the item keeps failing (the first success deletes it), so every
    worker process sees the same backoff and the Logbook hears once per failure streak.
    """

    class Kind(models.TextChoices):
        EXPIRE = "request.expire", "Ending an expired request"
        NOTIFY = "request.notify", "Sending a notification"
        RECONCILE = "instance.reconcile", "Reconciling an instance's users"
        RECONCILE_ACCOUNT = "account.reconcile", "Starting an account's reconciliation"
        INVENTORY = "inventory.region", "Syncing a region's inventory"
        INVENTORY_ACCOUNT = "account.inventory", "Starting an account's inventory sync"
        KEYS = "grant.keys", "Refreshing a grant's authorized keys"
        EXPIRY = "grant.expiry", "Moving a grant's account expiry"
        RESUME_APPROVED = "request.resume", "Resuming an approved request"
        RESUME_PROVISION = "grant.provision", "Resuming a grant's provisioning"
        RESUME_REMOVE = "grant.remove", "Resuming a grant's removal"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    # The item's own key: a primary key, or "<account pk>:<region>" for an inventory region.
    key = models.CharField(max_length=96)
    failures = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(db_index=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["kind", "key"]
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="sweep_failure_unique_item")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.failures} failure(s)"
