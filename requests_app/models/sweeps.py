"""What the periodic tasks could not handle, kept for their backoff."""

from __future__ import annotations

from django.db import models


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
