from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    label = "requests_app"
    verbose_name = "Access requests"

    def ready(self) -> None:
        from audit.instance_names import instance_names_source_set
        from requests_app import receivers  # noqa: F401  (ends access whose Admin role went)
        from requests_app.selectors import instance_names

        # The Logbook sits below this app and stores bare instance ids; tell it how to name them.
        instance_names_source_set(source=instance_names)
