from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People and AWS accounts"

    def ready(self) -> None:
        from accounts import signals  # noqa: F401  (connects the Logbook receivers)
        from accounts.saml import checks  # noqa: F401  (registers the IdP settings check)
