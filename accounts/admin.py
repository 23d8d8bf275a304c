from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import AwsAccount, Membership, User


@admin.register(User)
class PassportUserAdmin(UserAdmin):
    fieldsets = (*(UserAdmin.fieldsets or ()), ("Passport", {"fields": ("identity_store", "is_auditor")}))
    list_display = ("username", "email", "identity_store", "is_auditor", "is_superuser")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(AwsAccount)
class AwsAccountAdmin(admin.ModelAdmin):
    list_display = ("name", "account_id", "role_arn", "inventory_synced_at")
    inlines = [MembershipInline]
