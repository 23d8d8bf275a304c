from django.apps import AppConfig


class TerminalConfig(AppConfig):
    name = "terminal"
    verbose_name = "Browser terminal"

    def ready(self) -> None:
        from audit.anchor.verification import evidence_check_register
        from terminal import signals  # noqa: F401 - connects the sign-out receiver
        from terminal.recordings_check import recordings_removed_find

        # The full Logbook verification also checks that every sealed recording is still there.
        evidence_check_register(name="recordings", run=recordings_removed_find)
