from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import ApprovalPolicy, AwsAccount, Membership, SamlIdentity, SamlIdentityProvider, User
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


@admin.register(SamlIdentityProvider)
class SamlIdentityProviderAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "identity_store", "entity_id", "enabled")


@admin.register(SamlIdentity)
class SamlIdentityAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name_id", "identity_store", "user", "idp_slug", "last_sign_in_at")
    search_fields = ("name_id", "user__username")
    readonly_fields = ("created_at", "last_sign_in_at")
