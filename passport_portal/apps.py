"""The Django admin, installed with Passport's site (passport_portal.admin_site) as its default."""

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.core import checks


class PassportAdminConfig(AdminConfig):
    # admin.site and @admin.register, in this project and in every installed app, use this site.
    default_site = "passport_portal.admin_site.PassportAdminSite"


class PassportPortalConfig(AppConfig):
    # The project as an app of its own, for what belongs to no layer below it (``manage.py runportal``).
    name = "passport_portal"
    verbose_name = "Passport portal"

    def ready(self) -> None:
        # drf-spectacular learns of an extension when its class is defined.
        from passport_portal.api import schema  # noqa: F401
        from passport_portal.connection_checks import base_url_check, connections_check, mail_check
        from passport_portal.handoff_key import handoff_key_check
        from passport_portal.iam_gate import iam_gate_check, warn_if_off

        checks.register(connections_check, checks.Tags.security, deploy=True)
        checks.register(base_url_check, checks.Tags.security, deploy=True)
        checks.register(mail_check, checks.Tags.security, deploy=True)
        checks.register(iam_gate_check, checks.Tags.security, deploy=True)
        checks.register(handoff_key_check, checks.Tags.security, deploy=True)
        warn_if_off()
