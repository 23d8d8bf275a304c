from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def _anchor_keys_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """The checkpoint signing keys load, so a bad PEM stops `check` rather than the first checkpoint."""
    from audit.anchor.signing import trusted_public_keys

    try:
        trusted_public_keys()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="audit.E001")]
    return []


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Logbook"

    def ready(self) -> None:
        checks.register(_anchor_keys_check)
