from django.apps import AppConfig


class SshcaConfig(AppConfig):
    name = "sshca"
    verbose_name = "SSH certificate authority"
