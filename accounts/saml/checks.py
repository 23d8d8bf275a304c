"""Start-up check: the SAML identity providers in settings are complete (and https in production)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from accounts.saml.config import settings_identity_providers


@register()
def saml_identity_providers_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    try:
        settings_identity_providers()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="See PASSPORT_SAML_IDPS in README.md.", id="passport.E101")]
    if settings.PASSPORT_SAML_SP_KEY and not settings.PASSPORT_SAML_SP_CERT:
        return [Error("PASSPORT_SAML_SP_KEY is set without PASSPORT_SAML_SP_CERT.", id="passport.E102")]
    return []
