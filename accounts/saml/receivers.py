"""Receivers: an identity provider disabled, deleted or renamed in the admin (any save or delete of a
``SamlIdentityProvider``, its admin's bulk delete too) hands over to accounts.saml.withdrawal."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts.models import SamlIdentityProvider
from accounts.saml.withdrawal import saml_idp_withdraw


@receiver(pre_save, sender=SamlIdentityProvider, dispatch_uid="passport_saml_idp_before")
def remember_idp_before(sender: Any, instance: SamlIdentityProvider, **kwargs: Any) -> None:
    # The slug and switch as stored before this save (None for a new row).
    before = None
    if instance.pk is not None:
        before = SamlIdentityProvider.objects.filter(pk=instance.pk).values("slug", "enabled").first()
    instance._stored_before = before  # type: ignore[attr-defined]


@receiver(post_save, sender=SamlIdentityProvider, dispatch_uid="passport_saml_idp_withdrawn_on_save")
def withdraw_idp_on_save(sender: Any, instance: SamlIdentityProvider, created: bool, **kwargs: Any) -> None:
    before: dict[str, Any] | None = getattr(instance, "_stored_before", None)
    if created or not before or not before["enabled"]:
        return
    if not instance.enabled or instance.slug != before["slug"]:
        # A new slug is a new IdP to the sessions and tokens: the old one is gone.
        saml_idp_withdraw(slug=before["slug"])


@receiver(post_delete, sender=SamlIdentityProvider, dispatch_uid="passport_saml_idp_withdrawn_on_delete")
def withdraw_idp_on_delete(sender: Any, instance: SamlIdentityProvider, **kwargs: Any) -> None:
    saml_idp_withdraw(slug=instance.slug)
