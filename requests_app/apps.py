from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    label = "requests_app"
    verbose_name = "Access requests"

    def ready(self) -> None:
        from accounts.account_identity import live_grants_source_set
        from audit.instance_names import instance_names_source_set
        from requests_app import receivers  # noqa: F401  (ends access whose Admin role went)
        from requests_app.selectors import grants_needing_cleanup_count, instance_names

        # The Logbook sits below this app and stores bare instance ids; tell it how to name them.
        instance_names_source_set(source=instance_names)
        # Accounts sits below too: a role change while grants there need one is recorded with their count.
        live_grants_source_set(source=grants_needing_cleanup_count)
