"""A second admin site for the tests: a model registered later, the plain Django way, with list editing."""

from django.contrib import admin
from django.urls import path

from accounts.models import Membership
from passport_portal.admin_site import PassportAdminSite

site = PassportAdminSite(name="trail_check")


class PlainMembershipAdmin(admin.ModelAdmin):
    """No mixin here: the site adds it."""

    list_display = ("id", "user", "role")
    list_editable = ("role",)


site.register(Membership, PlainMembershipAdmin)

urlpatterns = [path("check-admin/", site.urls)]
