"""Browser terminal sessions and the one-time tickets that open them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from accounts import permissions


class TerminalTicket(models.Model):
    """A one-time connection token for one person and one grant, issued by the terminal page.

    Only a hash of the token is stored; the WebSocket consumes it with a conditional UPDATE,
    so a replayed token finds nothing to consume.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    grant = models.ForeignKey("requests_app.Grant", on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"terminal ticket {self.pk} for grant {self.grant_id}"


class TerminalSessionQuerySet(models.QuerySet["TerminalSession"]):
    def visible_to(self, user: Any) -> TerminalSessionQuerySet:
        """The recordings this person may watch (``accounts.permissions.recording_visibility``)."""
        return self.filter(permissions.recording_visibility(user))


class TerminalSession(models.Model):
    """One browser terminal: who, where, when, how much, and its asciicast v2 recording."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="terminal_sessions")
    grant = models.ForeignKey("requests_app.Grant", on_delete=models.PROTECT, related_name="terminal_sessions")
    ssm_session_id = models.CharField(max_length=128, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=256, blank=True)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    # Relative to MEDIA_ROOT.
    recording_path = models.CharField(max_length=255, blank=True)
    recording_sha256 = models.CharField(max_length=64, blank=True)
    # Plain text of the recording (terminal.transcript), filled when it is sealed, for search.
    # On PostgreSQL both are served by pg_trgm GIN indexes (migration 0002).
    transcript = models.TextField(blank=True, help_text="What the terminal printed, escape sequences removed.")
    transcript_input = models.TextField(blank=True, help_text="What was typed, escape sequences removed.")
    # {"o": [[offset, seconds], ...], "i": [...], "commands": [[seconds, line], ...]}
    transcript_index = models.JSONField(default=dict, blank=True)

    objects = TerminalSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"terminal {self.pk} of {self.user_id} on grant {self.grant_id}"
