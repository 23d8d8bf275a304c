"""The SAML identity providers offered on the sign-in page."""

from __future__ import annotations

from django import template

from accounts.saml.config import IdentityProvider, identity_providers

register = template.Library()


@register.simple_tag
def saml_identity_providers() -> list[IdentityProvider]:
    return identity_providers()
