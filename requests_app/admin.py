"""Grants in the admin: seen, never added, changed or deleted there (every change of a grant's state is
a service's: provisioning, removal, the sweeps). What a host or a person wrote (the account's SID
the create script reported, the last error) is shown made visible, as the request page shows it; the
sealed Windows password is on no page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.admin_trail import AuditedAdminMixin, ReadOnlyAdminMixin
from core.admin_display import made_visible
from requests_app.models import Grant


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "request",
        "instance",
        "username",
        "platform",
        "status",
        made_visible(Grant, "account_sid"),
        "ready_at",
        "removed_at",
    )
    list_display_links = ("id",)
    list_select_related = ("request", "instance")
    list_filter = ("status", "platform")
    search_fields = ("username", "instance__instance_id", "instance__name", "account_sid")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return [
            "uid",
            "request",
            "instance",
            "username",
            "platform",
            "domain_controller",
            "status",
            made_visible(Grant, "account_sid"),
            "attempts",
            "cleanup_attempts",
            "ready_at",
            "removed_at",
            "host_expires_at",
            "sshd_expiry_bound",
            made_visible(Grant, "last_error"),
        ]

    @admin.display(description="sshd expiry bound")
    def sshd_expiry_bound(self, obj: Grant) -> str:
        return obj.key_expiry_note or "-"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return self.get_readonly_fields(request, obj)  # only those: never the sealed password
