from typing import Any

from allauth.mfa.models import Authenticator
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from accounts import cli_tokens
from accounts.adapters import signs_in_through_an_idp
from accounts.models import (
    ApiToken,
    ApprovalPolicy,
    AwsAccount,
    Membership,
    SamlIdentity,
    SamlIdentityProvider,
    User,
)
from accounts.saml.config import identity_provider
from accounts.saml.links import link_idp_identity, link_reading_alike
from accounts.saml.name_ids import LEGACY_FORMAT, PERSISTENT, UNSPECIFIED, name_id_key
from accounts.signals import memberships_changed
from audit.admin_trail import AuditedAdminMixin, AuditedInlineMixin
from core.admin_display import made_visible
from core.dispatch import task_send_on_commit
from core.text import unsafe_text_message


class PassportUserChangeForm(UserChangeForm):
    """A person's names are shown wherever they act (the approvals, the Logbook, a notice on a
    watched engineer's terminal): no terminal escapes or direction-changing characters in them, as
    in a reason (``core.text``); an identity provider's names are cleaned where they come in."""

    def clean_first_name(self) -> str:
        return self._plain("first_name", "The first name")

    def clean_last_name(self) -> str:
        return self._plain("last_name", "The last name")

    def _plain(self, field: str, what: str) -> str:
        value = str(self.cleaned_data.get(field) or "")
        problem = unsafe_text_message(what, value)
        if problem:
            raise forms.ValidationError(problem)
        return value


@admin.register(User)
class PassportUserAdmin(AuditedAdminMixin, UserAdmin):
    form = PassportUserChangeForm
    fieldsets = (*(UserAdmin.fieldsets or ()), ("Passport", {"fields": ("identity_store", "is_auditor")}))
    list_display = ("username", "email", "identity_store", "is_auditor", "is_superuser")

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        """No local password for someone who signs in by SAML: it would outlive the IdP taking their
        groups away (and no password backend would accept it: accounts/auth_backends.py)."""
        user = self.get_object(request, id)
        if user is not None and signs_in_through_an_idp(user):
            self.message_user(
                request,
                f"{user.username} signs in through their identity provider and gets no password in Passport.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
        return super().user_change_password(request, id, form_url)

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

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Fixed once saved: the users Passport made are in the AWS account it names (AwsAccount.save
        # refuses a change by any other path; another AWS account is another row).
        fixed = ("account_id",) if obj is not None else ()
        return (*super().get_readonly_fields(request, obj), *fixed)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Who gave the account another role, for its account.role_changed entry (AwsAccount.save).
        obj.changed_by = request.user
        super().save_model(request, obj, form, change)
        if change and {"extra_forward_ports", "forward_destinations", "cli_sessions", "require_session_join"} & set(
            form.changed_data
        ):
            # The hosts of live grants hold the ports and destinations in their authorized_keys lines (permitopen),
            # and whether a person's own key logs in there (direct CLI sessions, not moderated): rewritten now, not
            # only at the periodic task's next run.
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


class SamlIdentityForm(forms.ModelForm):
    """Only the link's IdP signs its person in (accounts.saml.services): changing ``idp_slug`` here
    is how a site admin moves a person to another IdP, which must serve the link's store. Saved, the
    link belongs to the IdP that has that slug now (its entity id and nonce), or, no IdP having it,
    to the first that signs in through it: saving it again is how a link refused since its IdP was
    replaced under the same slug is given to the new one."""

    class Meta:
        model = SamlIdentity
        fields = ("user", "identity_store", "name_id", "idp_slug")
        help_texts = {
            "idp_slug": "The identity provider (its slug) that alone signs this person in; "
            "change it to move the person to another IdP of the same store. Saving gives the link "
            "to the IdP that has this slug now.",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        store, slug = cleaned.get("identity_store"), cleaned.get("idp_slug")
        if store and slug:
            # An IdP not (or no longer, or not yet) configured may be named: it signs nobody in meanwhile.
            idp = identity_provider(slug)
            if idp is not None and idp.identity_store != store:
                self.add_error("idp_slug", f"Choose an identity provider of the {store} store.")
        name_id = cleaned.get("name_id")
        if store and name_id and {"name_id", "identity_store"} & set(self.changed_data):
            # Links are found by the NameID's key (accounts.saml.name_ids): one key, one person. A
            # legacy link (no Format, as one added here) is found first, by its exact NameID, so it
            # must not take another's sign-ins; an email-like one must not read as another's (as at
            # sign-in).
            name_id_format = self.instance.name_id_format
            others = SamlIdentity.objects.filter(identity_store=store).exclude(pk=self.instance.pk)
            keys = {name_id_key(name_id, name_id_format)}
            if name_id_format == LEGACY_FORMAT:
                keys |= {name_id_key(name_id, UNSPECIFIED), name_id_key(name_id, PERSISTENT)}
            taken = (
                others.filter(name_id_key__in=keys).exists()
                or link_reading_alike(store=store, name_id=name_id, name_id_format=name_id_format, others=others)
                is not None
            )
            if taken:
                self.add_error(
                    "name_id", "Another person of this store is linked to this NameID (or one reading alike)."
                )
        return cleaned

    def save(self, commit: bool = True) -> Any:
        link = super().save(commit=False)
        idp = identity_provider(link.idp_slug)
        # No IdP has the slug (yet): the first that signs in through it takes the link.
        link.idp_entity_id, link.idp_trust_nonce = None, ""
        if idp is not None:
            for name, value in link_idp_identity(idp).items():
                setattr(link, name, value)
        if commit:
            link.save()
            self.save_m2m()
        return link


@admin.register(SamlIdentity)
class SamlIdentityAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = SamlIdentityForm
    # The NameID is the IdP's text: shown made visible (its form's box keeps it as it is, to edit).
    list_display = (made_visible(SamlIdentity, "name_id"), "identity_store", "user", "idp_slug", "last_sign_in_at")
    search_fields = ("name_id", "user__username")
    readonly_fields = ("name_id_format", "idp_entity_id", "created_at", "last_sign_in_at")


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """The CLI's sign-ins: seen and revoked here, never added or edited. The token's hash is not
    shown (it names the token in any log or query it is pasted into), nor looked up
    (audit.admin_trail.lookups); the Logbook names tokens by id.
    Revoking goes through accounts.cli_tokens, as the person's own page does, so the Logbook says so
    and open CLI proxy connections on the token close."""

    # The name is the CLI's (its host's name): shown made visible, as on the person's own page.
    list_display = (made_visible(ApiToken, "name"), "user", "created_at", "last_used_at", "expires_at", "live")
    list_select_related = ("user",)
    search_fields = ("name", "user__username")
    date_hierarchy = "created_at"
    actions = ["revoke_tokens"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return ["user", made_visible(ApiToken, "name"), "created_at", "last_used_at", "expires_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return self.get_readonly_fields(request, obj)  # only those: never the token's hash

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


# allauth's own admin shows Authenticator.data: the (sealed) TOTP secret and recovery seed.
if admin.site.is_registered(Authenticator):
    admin.site.unregister(Authenticator)


@admin.register(Authenticator)
class PassportAuthenticatorAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """People's second factors: seen, and deleted to reset a lost one (the Logbook says so); never
    edited, and their secrets are not on any page."""

    list_display = ("user", "type", "created_at", "last_used_at")
    list_filter = ("type",)
    list_select_related = ("user",)
    search_fields = ("user__username",)
    fields = readonly_fields = ("user", "type", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
