from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        # Registers the tasks that services queue by name (core.dispatch) in every process.
        from workers import tasks  # noqa: F401
