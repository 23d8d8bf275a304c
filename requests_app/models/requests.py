"""Access requests: their states, why they ended, and what an approver's note may hold."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts import permissions
from accounts.models import AwsAccount
from core.destinations import valid_destinations
from requests_app.models.instances import Instance

if TYPE_CHECKING:
    from requests_app.models.grants import Grant


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

    def in_force(self, now: datetime | None = None) -> AccessRequestQuerySet:
        """The requests whose access may be used now (``AccessRequest.in_force``), in the database's terms."""
        return self.filter(in_force_q(now))


def in_force_q(now: datetime | None = None, *, prefix: str = "") -> Q:
    """``AccessRequest.in_force`` as a filter, ``prefix`` leading to the request (``"request__"``
    from a grant)."""
    at = now or timezone.now()
    status, ends = f"{prefix}status", f"{prefix}expires_at"
    return Q(**{status: RequestStatus.ACTIVE}) & (Q(**{f"{ends}__isnull": True}) | Q(**{f"{ends}__gt": at}))


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
            # Every request one may see, newest first (the API's "all" list and the admin's).
            models.Index(fields=["-created_at", "-id"], name="request_newest"),
            models.Index(fields=["account", "status"], name="request_account_status"),
            models.Index(fields=["expires_at"], name="request_active_expiry", condition=Q(status="active")),
            # The active requests whose AWS credentials may still start sessions (services.withdrawn.credentials):
            # a handful at most, read every 30 s.
            models.Index(
                fields=["aws_credentials_until"],
                name="request_active_credentials",
                condition=Q(status="active", aws_credentials_until__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Request #{self.pk}"

    @property
    def total_duration(self) -> timedelta:
        return self.duration + self.extended_by

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_REQUEST_STATUSES

    def status_at(self, now: datetime | None = None) -> str:
        """The status as access goes: an active request past its end time is expired, though the
        expiry sweep (``lifecycle.expire``), which ends it, may not have run yet."""
        at = now or timezone.now()
        if self.status == RequestStatus.ACTIVE and self.expires_at is not None and self.expires_at <= at:
            return RequestStatus.EXPIRED
        return self.status

    def in_force(self, now: datetime | None = None) -> bool:
        """Whether its access may be used now: active and not past its end time. Every check before
        handing out access (a terminal, a session, a certificate, a password) asks this, never the
        status alone: the sweep that expires the request runs later, or not while the workers are down."""
        return self.status_at(now) == RequestStatus.ACTIVE

    @property
    def approval_deadline(self) -> datetime:
        """When a request still waiting for approval expires unapproved: ``PASSPORT_PENDING_REQUEST_HOURS``
        after it was made (the expiry sweep ends it, and no approval is taken from then on)."""
        return self.created_at + timedelta(hours=settings.PASSPORT_PENDING_REQUEST_HOURS)

    @property
    def expired_unapproved(self) -> bool:
        """Ended by the expiry sweep while it still waited for approval: never active, so never approved."""
        return self.end_reason == EndReason.EXPIRED and self.activated_at is None

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
