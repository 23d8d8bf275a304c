"""The Django admin, installed with Passport's site (passport_portal.admin_site) as its default."""

from django.contrib.admin.apps import AdminConfig


class PassportAdminConfig(AdminConfig):
    # admin.site and @admin.register, in this project and in every installed app, use this site.
    default_site = "passport_portal.admin_site.PassportAdminSite"
