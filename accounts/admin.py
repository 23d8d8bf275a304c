from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts import cli_tokens
from accounts.models import (
    ApiToken,
    ApprovalPolicy,
    AwsAccount,
    Membership,
    SamlIdentity,
    SamlIdentityProvider,
    User,
)
from accounts.signals import memberships_changed
from audit.admin_trail import AuditedAdminMixin, AuditedInlineMixin
from core.dispatch import task_send_on_commit


@admin.register(User)
class PassportUserAdmin(AuditedAdminMixin, UserAdmin):
    fieldsets = (*(UserAdmin.fieldsets or ()), ("Passport", {"fields": ("identity_store", "is_auditor")}))
    list_display = ("username", "email", "identity_store", "is_auditor", "is_superuser")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Who deactivated the person, for the Logbook entries of the access that ends with it
        # (accounts.signals.person_deactivated).
        obj.changed_by = request.user
        super().save_model(request, obj, form, change)


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

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "extra_forward_ports" in form.changed_data:
            # The hosts of live grants hold the ports in their authorized_keys lines (permitopen):
            # rewritten now, not only at the periodic task's next run.
            task_send_on_commit("bind_grant_keys")

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


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """The CLI's sign-ins: seen and revoked here, never added or edited. The token's hash is not
    shown (it names the token in any log or query it is pasted into); the Logbook names tokens by id.
    Revoking goes through accounts.cli_tokens, as the person's own page does, so the Logbook says so
    and open CLI proxy connections on the token close."""

    list_display = ("name", "user", "created_at", "last_used_at", "expires_at", "live")
    list_select_related = ("user",)
    search_fields = ("name", "user__username")
    date_hierarchy = "created_at"
    fields = readonly_fields = ("user", "name", "created_at", "last_used_at", "expires_at")
    actions = ["revoke_tokens"]

    @admin.display(description="Live", boolean=True)
    def live(self, token: ApiToken) -> bool:
        return token.expires_at > timezone.now()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked with the action below, never deleted behind the Logbook's back

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return super().has_delete_permission(request)

    @admin.action(description="Revoke the selected CLI sign-ins", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        actor = request.user if isinstance(request.user, User) else None
        count = cli_tokens.api_tokens_revoke(
            tokens=queryset, actor=actor, reason=cli_tokens.RevokeReason.REVOKED_BY_ADMIN
        )
        self.message_user(request, f"Revoked {count} CLI sign-in{'s' if count != 1 else ''}.", messages.SUCCESS)
