from django.apps import AppConfig


class TerminalConfig(AppConfig):
    name = "terminal"
    verbose_name = "Browser terminal"
