from django.contrib import admin

from audit.admin_trail import AuditedAdminMixin, EvidenceAdminMixin
from terminal.models import TerminalSession


@admin.register(TerminalSession)
class TerminalSessionAdmin(EvidenceAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    """Recordings are evidence: shown, never changed or deleted, even by a superuser."""

    list_display = ("id", "user", "grant", "started_at", "ended_at", "bytes_in", "bytes_out")
    readonly_fields = [field.name for field in TerminalSession._meta.fields]
