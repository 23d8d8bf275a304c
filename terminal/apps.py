from django.apps import AppConfig


class TerminalConfig(AppConfig):
    name = "terminal"
    verbose_name = "Browser terminal"

    def ready(self) -> None:
        from terminal import signals  # noqa: F401 - connects the sign-out receiver
