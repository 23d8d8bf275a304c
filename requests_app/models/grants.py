"""Grants: one instance of a request, the short-lived user there and how far it got."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from requests_app.models.instances import Instance, host_kind_label

NO_KEY_EXPIRY_NOTE = "no sshd expiry bound on this host (OpenSSH older than 7.7)"


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


class Grant(models.Model):
    """One instance of a request: the short-lived user there and how far it got."""

    # Names this grant on the hosts (the removal tombstone), unique across every installation and database.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # By name: requests.py names Grant (the through model of AccessRequest.instances), so importing
    # AccessRequest here would make the two modules import each other.
    request = models.ForeignKey("AccessRequest", on_delete=models.CASCADE, related_name="grants")
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
    # Removal tries that failed (the host's answer, or none); never reset nor lowered, so the
    # grants' sum is a Prometheus counter (``passport_run_command_errors_total{operation="remove"}``)
    # where the Logbook hears of a host that never answers only a few times a day.
    cleanup_failures = models.PositiveIntegerField(default=0, db_default=0, editable=False)
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
    # Linux: the moment the host's lines of this grant stop taking certificates (their sshd
    # ``expiry-time``, the grant's own request's end to the minute, rounded down); None when not
    # known (grants from before lines carried it, a script whose record was lost). Moved with the
    # end as the account's expiry is.
    key_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Linux: whether the host's lines were last written with that expiry-time: False where the
    # host's sshd is older than OpenSSH 7.7 (or its version could not be told) and the script left
    # it out, saying so (``fleet.ssh_keys.lines_without_expiry_time``); the lines are then bounded by
    # the certificate's validity and the account's expiry, and the expiry sweep does not rewrite
    # them for their minute. None when not known (Windows, grants from before this was kept, a
    # script whose record was lost: ``provisioning.expiry.host_expiry_not_known``).
    key_expiry_written = models.BooleanField(null=True, default=None, editable=False)
    # How many scripts that wrote the account's expiry or the lines' expiry-time on the grant's host
    # (a create, an expiry move, a key refresh, another grant's script on the same Linux user) have
    # recorded what they wrote: a script keeps its record of the expiries only if none recorded since
    # it was rendered, else they read as not known (``provisioning.expiry.host_expiry_record``).
    # A count, not the value written: two scripts may write the same end with another between them.
    host_writes = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    # Linux: the account's forwarding destinations as they were when the lines were last written
    # (with the request's own, ``AccessRequest.destinations_in_force``): rewritten in the same way.
    key_forward_destinations = models.JSONField(default=list, editable=False)
    # Linux: the fingerprints (sorted) of the CA keys the host's lines were last written with; None
    # when not known (grants from before this was kept, or a script that landed with keys the CA
    # had changed meanwhile). The same periodic task rewrites the lines of a grant whose keys are not
    # the CA's active and trusted keys of now: a rotation or retirement while a script was on its
    # way, which the refresh it queued missed (``provisioning.host_lines._ca_keys_written``).
    key_ca_fingerprints = models.JSONField(null=True, default=None, editable=False)
    # Linux: whether the host's lines were last written trusting the grant's direct principal (a
    # person's own key logging in to sshd: ``core.usernames.direct_principal``); None when not known
    # (grants from before this was kept). The same periodic task, and the switch of the account to
    # recorded or moderated at once, rewrites the lines of a grant whose account allows direct logins
    # otherwise now (``provisioning.host_lines.direct_login_allowed``).
    key_direct_login = models.BooleanField(null=True, default=None, editable=False)
    removed_at = models.DateTimeField(null=True, blank=True)
    # Windows: the SID of the account the create made, as its script reported it (checked by
    # ``fleet.windows_sid``): the removal finds the account by it, whatever it was renamed to. None
    # for a Linux grant, a grant made before creates reported one, or an output that named none.
    account_sid = models.CharField(max_length=64, null=True, blank=True, default=None, editable=False)
    # Linux: the uid of the account the create made or found, as its script reported it (one of
    # Passport's range, checked by ``fleet.linux_uid``): the removal finds the account by it,
    # whatever it was renamed to. None for a Windows grant, a grant made before creates reported
    # one, or an output that named none.
    account_uid = models.PositiveIntegerField(null=True, blank=True, default=None, editable=False)
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

    @property
    def key_expiry_note(self) -> str:
        """What the request page and the admin say of a grant whose host's lines went without sshd's
        expiry-time (``key_expiry_written`` False); empty otherwise."""
        return NO_KEY_EXPIRY_NOTE if self.key_expiry_written is False else ""
