from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from django.conf import settings
from django.db import models


class LogbookEntry(models.Model):
    """One append-only, hash-chained record of something that happened.

    Subjects are stored as plain values, not foreign keys, so that an entry outlives
    the objects it names and nothing ever has to update it.
    """

    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_label = models.CharField(max_length=150, help_text="Who acted, as named at the time; 'system' for workers.")
    action = models.CharField(max_length=64)
    account_id = models.CharField(max_length=12, blank=True)
    request_id = models.BigIntegerField(null=True, blank=True)
    # Space-delimited with a leading and trailing space (" i-1 i-2 "), so one instance
    # is matched by a portable, indexable containment test.
    instance_ids = models.CharField(max_length=2000, blank=True)
    detail = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # Which Logbook key made ``hash`` (an HMAC-SHA256); "legacy-sha256" for the unkeyed entries
    # written before keyed hashes, and for any row inserted without naming a key.
    key_id = models.CharField(max_length=32, db_default="legacy-sha256")

    # Not stored: the fields the Logbook page and exports could not read (a time or detail only a
    # database writer can leave: audit.selectors), each with its stored text, shown as it is.
    unreadable: Mapping[str, str] = MappingProxyType({})

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "logbook entries"
        indexes = [
            models.Index(fields=["created_at", "id"], name="logbook_time"),
            models.Index(fields=["action", "id"], name="logbook_action"),
            models.Index(fields=["account_id", "id"], name="logbook_account"),
            models.Index(fields=["request_id", "id"], name="logbook_request"),
            models.Index(fields=["actor", "id"], name="logbook_actor"),
            # The person filter matches the name as recorded (it also finds "system").
            models.Index(fields=["actor_label", "id"], name="logbook_actor_label"),
            # Is there an entry under a newer key before this one? (audit.anchor.status: a retired
            # key signs nothing after it; audit.key_order.)
            models.Index(fields=["key_id", "id"], name="logbook_key"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} by {self.actor_label}"

    @property
    def instance_id_list(self) -> list[str]:
        return self.instance_ids.split()


class LogbookHead(models.Model):
    """A single row locked while appending, so the chain has exactly one tip."""

    last_hash = models.CharField(max_length=64)
    last_entry_id = models.BigIntegerField(null=True)
    # The tip's time: the next entry is never dated before it (see logbook_append).
    last_created_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"Logbook tip #{self.last_entry_id} {self.last_hash[:12]}"


class LogbookCheckpoint(models.Model):
    """A copy of one checkpoint written to the evidence bucket, for the Logbook page.

    Not trusted: ``verify_logbook`` reads the signed objects in the bucket, never this table,
    so a row removed or changed here changes nothing it concludes.
    """

    entry_id = models.BigIntegerField()
    entry_hash = models.CharField(max_length=64)
    key_id = models.CharField(max_length=32)
    written_at = models.DateTimeField()
    reason = models.CharField(max_length=16)  # "periodic" or "export"
    object_key = models.CharField(max_length=300)
    version_id = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"checkpoint of #{self.entry_id} at {self.written_at:%Y-%m-%d %H:%M:%S}"


class LogbookVerification(models.Model):
    """One run of the full check (``verify_logbook`` or the daily task) and what it found."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    intact = models.BooleanField()
    entries = models.BigIntegerField(default=0)
    checkpoints = models.IntegerField(default=0)
    exit_code = models.IntegerField()
    kinds = models.JSONField(default=list)
    summary = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"verification at {self.finished_at:%Y-%m-%d %H:%M:%S}: {'intact' if self.intact else 'broken'}"


class RefusalTally(models.Model):
    """How often one kind of refusal came from one source in one time window.

    Working state, not the record: ``audit.refusals`` writes the first refusal of each
    (action, source, reason, window) to the Logbook at once, counts the rest here, writes
    the counts as one summary entry when the window has closed, and then deletes the rows.
    So anonymous garbage adds a bounded number of entries to a Logbook that never shrinks.
    """

    action = models.CharField(max_length=64)
    # The client's address (an IPv6 client as its /64), or OTHER_SOURCES past the cap.
    source = models.CharField(max_length=64)
    reason = models.CharField(max_length=64)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["action", "window_start", "source", "reason"], name="refusal_tally_key"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.reason} from {self.source}: {self.count}"


class ThrottleWindow(models.Model):
    """Attempts of one kind by one key (a person, an address) in one fixed window.

    In the database rather than Django's cache, which is per process here: the count must
    hold across every web process. Expired rows are purged by the periodic refusal flush,
    which is why it lives here, next to the refusal tally.
    """

    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=128)
    window_start = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key", "window_start"], name="throttle_window_key"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}: {self.count}"
