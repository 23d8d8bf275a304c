from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from audit.admin_trail import AuditedAdminMixin, EvidenceAdminMixin
from terminal.models import TerminalSession


@admin.register(TerminalSession)
class TerminalSessionAdmin(EvidenceAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    """Recordings and their transcripts are evidence: shown to superusers, never added, changed or
    deleted, not even by them (EvidenceAdminMixin). Playing one is the portal's player, which checks
    the recording's digest and logs each viewing; the admin links to it."""

    list_display = ("id", "user", "instance", "started_at", "ended_at", "end_reason", "bytes_in", "bytes_out", "play")
    list_display_links = ("id",)
    list_select_related = ("user", "grant__instance")
    search_fields = ("user__username", "grant__instance__instance_id", "grant__instance__name")
    date_hierarchy = "started_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Every field (the transcripts among them), whatever the model gains later, after the player's link.
        return ["play", "instance", *(field.name for field in TerminalSession._meta.fields)]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # What was typed and printed on a host: superusers only here (auditors read it in the portal).
        return bool(request.user.is_active and request.user.is_superuser)

    @admin.display(description="Instance", ordering="grant__instance__name")
    def instance(self, session: TerminalSession) -> str:
        return str(session.grant.instance)  # a Name tag: the admin escapes it

    @admin.display(description="Recording")
    def play(self, session: TerminalSession) -> SafeString:
        url = reverse("terminal:recording", args=[session.pk])
        return format_html('<a class="passport-admin-play" href="{}">Play in Passport</a>', url)
