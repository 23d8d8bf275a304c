"""Browser terminal sessions and the one-time tickets that open them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts import permissions


class TerminalTicket(models.Model):
    """A one-time connection token for one person and one grant, issued by the terminal page.

    Only a hash of the token is stored; the WebSocket consumes it with a conditional UPDATE,
    so a replayed token finds nothing to consume.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    grant = models.ForeignKey("requests_app.Grant", on_delete=models.CASCADE, related_name="+")
    # Indexed for the sweep that deletes expired tickets (workers.tasks.purge_terminal_tickets).
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"terminal ticket {self.pk} for grant {self.grant_id}"


class TerminalSessionQuerySet(models.QuerySet["TerminalSession"]):
    def visible_to(self, user: Any) -> TerminalSessionQuerySet:
        """The recordings this person may watch (``accounts.permissions.recording_visibility``)."""
        return self.filter(permissions.recording_visibility(user))


class RecordingState(models.TextChoices):
    RECORDING = "recording", "Recording"
    COMPLETE = "complete", "Complete"
    # The web process died or storage failed: what was kept plays, up to recorded_seconds.
    PARTIAL = "partial", "Partial"
    # Nothing playable was kept (or the session was allowed to run unrecorded).
    FAILED = "failed", "Failed"


class Client(models.TextChoices):
    BROWSER = "browser", "Browser"
    # Through the portal's recording SSH proxy (terminal.proxy): passport connect, ssh, scp, ansible...
    CLI = "cli", "CLI"


class SessionKind(models.TextChoices):
    SHELL = "shell", "Shell"
    EXEC = "exec", "Command"


class TerminalSession(models.Model):
    """One recorded session: a browser terminal, or a shell or command through the CLI proxy.

    Who, where, when, how much, and its asciicast v2 recording.
    """

    client = models.CharField(max_length=8, choices=Client.choices, default=Client.BROWSER, db_index=True)
    kind = models.CharField(max_length=8, choices=SessionKind.choices, default=SessionKind.SHELL)
    # An exec session's command line, as the client sent it (never run by the portal).
    command = models.TextField(blank=True)
    exit_status = models.IntegerField(null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="terminal_sessions")
    grant = models.ForeignKey("requests_app.Grant", on_delete=models.PROTECT, related_name="terminal_sessions")
    ssm_session_id = models.CharField(max_length=128, blank=True)
    # A CLI row: the id of its connection's SessionSlot (terminal.slots), which counts in the rows'
    # stead while none of them is live. A plain number: the slot is gone once the connection closes.
    connection_slot = models.BigIntegerField(null=True, blank=True, db_index=True, editable=False)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=256, blank=True)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    # In the "recordings" storage: the prefix of its chunks (``recordings/<uuid>``), or, for a
    # recording made before chunks (until ``manage.py migrate_recordings``), the whole file.
    recording_path = models.CharField(max_length=255, blank=True)
    # Of everything kept, in order (the chunks joined): the digest the Logbook records.
    recording_sha256 = models.CharField(max_length=64, blank=True)
    recording_state = models.CharField(
        max_length=16, choices=RecordingState.choices, default=RecordingState.RECORDING, db_index=True
    )
    # Why a recording is partial or failed, for the page and the Logbook.
    recording_note = models.CharField(max_length=256, blank=True)
    # Where what was kept stops, in seconds from its start.
    recorded_seconds = models.FloatField(null=True, blank=True)
    # Written by the web process every few seconds while the terminal is open; a stale one means
    # that process is gone (terminal.sweeps).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Plain text of the recording (terminal.transcript), filled when it is sealed, for search.
    # The search reads them newest first, each once (terminal.selectors._first_matches); the pg_trgm
    # GIN indexes of migration 0002 go unused by it, as each candidate they gave would be read twice.
    transcript = models.TextField(blank=True, help_text="What the terminal printed, escape sequences removed.")
    transcript_input = models.TextField(blank=True, help_text="What was typed, escape sequences removed.")
    # {"o": [[offset, seconds], ...], "i": [...], "commands": [[seconds, line], ...]}
    transcript_index = models.JSONField(default=dict, blank=True)

    objects = TerminalSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # The recordings list and the admin's: newest first, read from the top.
            models.Index(fields=["-started_at", "-id"], name="terminal_session_newest"),
            # The open sessions (live list, sweeps, caps, IAM re-check), a few among all those kept.
            models.Index(
                fields=["started_at", "id"], name="terminal_session_open", condition=models.Q(ended_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"terminal {self.pk} of {self.user_id} on grant {self.grant_id}"


class SessionSlot(models.Model):
    """A place under the cap on open sessions (terminal.slots), taken before anything starts.

    A browser terminal's slot counts while it opens: its TerminalSession row takes its place in
    one transaction (or it is deleted when the opening fails). A CLI proxy connection's slot is
    the connection's for as long as its SSH connection is open: its shells and commands name it
    (``TerminalSession.connection_slot``) and count in its stead while any of them is live; it
    counts itself otherwise (forwards only, idle, between commands). Either way two sessions
    opening at once cannot both take the last place."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    grant = models.ForeignKey("requests_app.Grant", on_delete=models.CASCADE, related_name="+")
    # When it was taken or last touched: it counts for terminal.slots.OPENING_SECONDS after that.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"session slot {self.pk} of {self.user_id} on grant {self.grant_id}"


class RecordingChunk(models.Model):
    """One stored piece of a recording: the manifest that says what was kept and its SHA-256.

    A row is written only after its object is stored, in order, so the chunks of a session
    joined by ``number`` are always a playable prefix of its asciicast file.
    """

    session = models.ForeignKey(TerminalSession, on_delete=models.PROTECT, related_name="chunks")
    number = models.PositiveIntegerField()
    key = models.CharField(max_length=255)
    # The S3 VersionId of the object stored (read back by it: a new version put over the key later is
    # none of the recording); "" for local files and rows stored before it was kept (read by key).
    version_id = models.CharField(max_length=1024, blank=True, default="")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    # The time of the last event in this chunk, seconds from the recording's start.
    seconds = models.FloatField(default=0)
    stored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "number"]
        constraints = [models.UniqueConstraint(fields=["session", "number"], name="terminal_chunk_unique_number")]

    def __str__(self) -> str:
        return f"chunk {self.number} of terminal {self.session_id}"


class ProxyForward(models.Model):
    """One ``ssh -L`` (or ``-W``) connection through the CLI's recording proxy, on record from its
    opening (``forward.opened``, before a byte passes) to its end (``forward.closed``). Its web
    process beats ``heartbeat_at`` while it is open; one silent past the stale limit (the process was
    killed) is ended on record by the orphan sweep (``terminal.sweeps``), its bytes unknown."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    grant = models.ForeignKey("requests_app.Grant", on_delete=models.PROTECT, related_name="+")
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["started_at", "id"], name="proxy_forward_open", condition=models.Q(ended_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return f"forward #{self.pk} to {self.host}:{self.port}"


def heartbeat_cutoff(now: datetime | None = None) -> datetime:
    """A terminal or forward not heard from since this is presumed to have lost its web process."""
    return (now or timezone.now()) - timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS)


def heartbeat_silent_since(cutoff: datetime) -> models.Q:
    """Rows (``TerminalSession``, ``ProxyForward``) whose web process has not beaten since ``cutoff``."""
    return models.Q(heartbeat_at__lt=cutoff) | models.Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
