"""Approval policies, the approvals given, and the record of notifications sent."""

from __future__ import annotations

from datetime import timedelta

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from accounts.models.aws_accounts import AwsAccount
from accounts.models.people import User
from accounts.models.trailed import TrailedQuerySet


class NotificationReceipt(models.Model):
    """One notification of one kind about one request (and event): claimed by a sender, then sent.

    The claim is what keeps a mail to once when two deliveries race (the unique constraints); it
    counts as sent only once the mail server took the mail (``sent_at``). A claim left unsent (the
    server refused it, the sender crashed or was killed) is claimed again after a while by a
    later delivery or the notification sweep (``requests_app.notifications.delivery``).
    """

    kind = models.CharField(max_length=32)
    request_id = models.BigIntegerField()
    # The "ends soon" warning is about one end time: after an extension the new end has its own.
    # None for every other kind.
    expires_at = models.DateTimeField(null=True, blank=True)
    # The event told of, for a kind told more than once about one request (asked again after the
    # request went back to pending, each extension): the Logbook entry marking it. 0 for the first
    # (and for every kind told once); in the database too, for the release before it (migration 0021).
    event_id = models.BigIntegerField(default=0, db_default=0)
    # Defaults in the database too, for receipts the release before these columns writes during a
    # rolling deploy (migration 0019): claimed and tried once as it is written, as 0016 took older ones.
    claimed_at = models.DateTimeField(default=timezone.now, db_default=Now())
    attempts = models.PositiveSmallIntegerField(default=1, db_default=1)
    # When the mail server accepted it (or it turned out there was nobody to tell); None until then.
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "request_id", "event_id"],
                condition=models.Q(expires_at__isnull=True),
                name="notification_once_per_event",
            ),
            models.UniqueConstraint(
                fields=["kind", "request_id", "expires_at"],
                condition=models.Q(expires_at__isnull=False),
                name="notification_once_per_request_end",
            ),
        ]
        indexes = [
            models.Index(fields=["claimed_at"], name="notification_unsent", condition=models.Q(sent_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"{self.kind} for request #{self.request_id}"


class ApprovalPolicy(models.Model):
    """How requests on one account are decided. Without one: a single approval, no automatic rules."""

    account = models.OneToOneField(AwsAccount, on_delete=models.CASCADE, related_name="approval_policy")
    approvals_required = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    # Auto-approval: every condition switched on must hold.
    auto_approve = models.BooleanField(default=False)
    auto_approve_identity_store = models.CharField(
        max_length=16, choices=User.IdentityStore.choices, default=User.IdentityStore.INTERNAL, blank=True
    )
    auto_approve_requires_ticket = models.BooleanField(default=True)
    auto_approve_max_duration = models.DurationField(default=timedelta(hours=2))
    auto_approve_admin_rights = models.BooleanField(
        default=False,
        verbose_name="Auto-approve administrator rights",
        help_text="Also approve requests for administrator rights automatically; otherwise an approver decides them.",
    )
    # Deny rules: a request breaking one is refused when it is made, at its approval and before its
    # provisioning (a rule set while it waited), and so is an extension that would; a live request
    # that breaks one set since is revoked when the policy is saved, and one longer than a lowered
    # deny_over_duration is shortened (requests_app.services.lifecycle.policy).
    deny_without_ticket = models.BooleanField(default=False)
    deny_admin_rights = models.BooleanField(
        default=False,
        verbose_name="Deny administrator rights",
        help_text="Refuse requests for administrator rights (sudo on Linux, Administrators on Windows).",
    )
    deny_over_duration = models.DurationField(null=True, blank=True)

    # Its update() and bulk_create() on the record too (accounts.models.trailed).
    objects = TrailedQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return f"approval policy of {self.account}"


class RequestApproval(models.Model):
    """One approver's yes on a request that needs several."""

    request_id = models.BigIntegerField()
    approver = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    approved_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=256, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request_id", "approver"], name="one_approval_per_approver")]

    def __str__(self) -> str:
        return f"request #{self.request_id} approved by {self.approver_id}"
