from django.contrib import admin

from terminal.models import TerminalSession


@admin.register(TerminalSession)
class TerminalSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "grant", "started_at", "ended_at", "bytes_in", "bytes_out")
    readonly_fields = [field.name for field in TerminalSession._meta.fields]
