from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from accounts.models import ApprovalPolicy, AwsAccount, Membership, SamlIdentity, SamlIdentityProvider, User
from accounts.signals import memberships_changed
from audit.admin_trail import AuditedAdminMixin, AuditedInlineMixin


@admin.register(User)
class PassportUserAdmin(AuditedAdminMixin, UserAdmin):
    fieldsets = (*(UserAdmin.fieldsets or ()), ("Passport", {"fields": ("identity_store", "is_auditor")}))
    list_display = ("username", "email", "identity_store", "is_auditor", "is_superuser")


class MembershipInline(AuditedInlineMixin, admin.TabularInline):
    model = Membership
    extra = 0


class ApprovalPolicyInline(AuditedInlineMixin, admin.StackedInline):
    """Who approves, how many approvals, and the automatic approve/deny rules of one account."""

    model = ApprovalPolicy
    extra = 0
    max_num = 1


@admin.register(AwsAccount)
class AwsAccountAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "account_id", "role_arn", "cli_sessions", "require_session_join", "inventory_synced_at")
    list_filter = ("cli_sessions", "require_session_join")
    inlines = [MembershipInline, ApprovalPolicyInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        # The rows as they were, of every inline row edited or deleted (its person may change too).
        touched = [row.instance.pk for row in formset.initial_forms if row.has_changed()]
        before = list(Membership.objects.filter(pk__in=touched).values_list("user_id", "account_id"))
        super().save_formset(request, form, formset, change)
        if before:
            # Whoever is no longer an Admin here loses their live access (the requests app listens).
            memberships_changed.send(sender=Membership, memberships=before, actor=request.user, via="admin")


@admin.register(SamlIdentityProvider)
class SamlIdentityProviderAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "identity_store", "entity_id", "enabled")


@admin.register(SamlIdentity)
class SamlIdentityAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name_id", "identity_store", "user", "idp_slug", "last_sign_in_at")
    search_fields = ("name_id", "user__username")
    readonly_fields = ("created_at", "last_sign_in_at")
