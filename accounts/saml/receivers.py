"""Receivers: an identity provider disabled, deleted, renamed or given another certificate or entity id
(any save or delete of a ``SamlIdentityProvider``, the admin's included, its bulk delete too) hands
over to accounts.saml.withdrawal (a queryset's update(): accounts.change_trail_bulk)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts.models import SamlIdentityProvider
from accounts.saml.withdrawal import IDP_WATCHED_FIELDS, saml_idp_saved_react, saml_idp_withdraw


@receiver(pre_save, sender=SamlIdentityProvider, dispatch_uid="passport_saml_idp_before")
def remember_idp_before(sender: Any, instance: SamlIdentityProvider, update_fields: Any = None, **kwargs: Any) -> None:
    # The watched fields this save writes, as stored before it ({} for a new row). A save never
    # moves the trust generation (only accounts.saml.withdrawal does): an instance read before it
    # moved must not write the old one back, bringing back the sessions it ended.
    written = [name for name in IDP_WATCHED_FIELDS if update_fields is None or name in update_fields]
    generation_written = update_fields is None or "trust_generation" in update_fields
    before: dict[str, Any] = {}
    if instance.pk is not None and (written or generation_written) and not kwargs.get("raw"):
        generation = ["trust_generation"] if generation_written else []
        before = SamlIdentityProvider.objects.filter(pk=instance.pk).values(*written, *generation).first() or {}
        if "trust_generation" in before:
            instance.trust_generation = before.pop("trust_generation")
    instance._stored_before = before  # type: ignore[attr-defined]


@receiver(post_save, sender=SamlIdentityProvider, dispatch_uid="passport_saml_idp_withdrawn_on_save")
def withdraw_idp_on_save(sender: Any, instance: SamlIdentityProvider, created: bool, **kwargs: Any) -> None:
    if not created:
        saml_idp_saved_react(idp=instance, before=getattr(instance, "_stored_before", {}))


@receiver(post_delete, sender=SamlIdentityProvider, dispatch_uid="passport_saml_idp_withdrawn_on_delete")
def withdraw_idp_on_delete(sender: Any, instance: SamlIdentityProvider, **kwargs: Any) -> None:
    saml_idp_withdraw(slug=instance.slug)
