"""SAML identity providers, people's links to them, and the assertions already used."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from accounts.models.people import User
from accounts.models.trailed import TrailedQuerySet
from accounts.saml.name_ids import (
    EMAIL_ADDRESS,
    KEY_MAX_LENGTH,
    NAME_ID_FORMAT_MAX_LENGTH,
    NAME_ID_MAX_LENGTH,
    UNSPECIFIED,
    name_id_key,
    name_id_lookalike,
)
from core.text import visible


def new_trust_nonce() -> str:
    """A fresh ``SamlIdentityProvider.trust_nonce``: this row, and no row made before or after it."""
    return secrets.token_hex(16)


class SamlIdentityProvider(models.Model):
    """An identity provider defined in the admin (those in settings take precedence by slug)."""

    slug = models.SlugField(max_length=40, unique=True, help_text="Names the IdP in Passport's SAML URLs.")
    name = models.CharField(max_length=100, help_text='Shown on the button: "Sign in with <name>".')
    identity_store = models.CharField(max_length=16, choices=User.IdentityStore.choices)
    entity_id = models.CharField(max_length=500)
    sso_url = models.URLField(max_length=500, verbose_name="SSO URL")
    slo_url = models.URLField(max_length=500, blank=True, verbose_name="SLO URL")
    x509cert = models.TextField(verbose_name="X.509 certificate", help_text="The IdP's signing certificate (PEM).")
    allow_idp_initiated = models.BooleanField(
        default=False, help_text="Accept responses Passport did not ask for (IdP-initiated sign-in)."
    )
    enabled = models.BooleanField(default=True)
    # Part of what each session it signs in records of it (accounts.saml.config.identity_provider_trust):
    # moved on when it is disabled, renamed, or its certificate or entity id changes
    # (accounts.saml.withdrawal), so that nothing it signed in before comes back when it is enabled
    # again or given its old slug back.
    trust_generation = models.PositiveIntegerField(
        default=0,
        db_default=0,
        editable=False,
        help_text="Moves on each time the IdP is disabled or renamed, or its certificate or entity id changes.",
    )
    # Part of that trust too: random, made with the row and never changed, so that a row deleted and
    # made again as it was (its generation back at 0) is another IdP to the sessions of the first.
    # "" for the rows made before it was kept (and by code older than it while a deploy rolls): their
    # trust stays what it was, so that adding it signed nobody out.
    trust_nonce = models.CharField(max_length=64, default=new_trust_nonce, db_default="", editable=False)

    # Its update() and bulk_create() on the record too (accounts.models.trailed).
    objects = TrailedQuerySet.as_manager()

    class Meta:
        verbose_name = "SAML identity provider"

    def __str__(self) -> str:
        return f"{self.name} ({self.identity_store})"

    def clean(self) -> None:
        from django.conf import settings

        if settings.PRODUCTION:
            insecure = [name for name in ("sso_url", "slo_url") if getattr(self, name).startswith("http://")]
            if insecure:
                raise ValidationError(dict.fromkeys(insecure, "Production accepts only https:// identity providers."))


class SamlIdentity(models.Model):
    """Links a person to the NameID one identity store knows them by. Email never links.

    The link is found by ``name_id_key`` (accounts.saml.name_ids): an email-address or unspecified
    NameID differing only in ASCII case finds the same person, any other Format only the exact
    NameID, and a link made before the Format was kept (Format "") only its exact NameID;
    ``name_id`` keeps the NameID as first sent.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="saml_identities")
    identity_store = models.CharField(max_length=16, choices=User.IdentityStore.choices)
    name_id = models.CharField(max_length=NAME_ID_MAX_LENGTH)
    # The NameID's Format as the IdP sent it (none sent: unspecified); "" for a link made before it
    # was kept, or by a site admin. The database defaults ("") let code older than these columns
    # still add links while a deploy rolls (each such link is then an exact, legacy one).
    name_id_format = models.CharField(max_length=NAME_ID_FORMAT_MAX_LENGTH, blank=True, default="", db_default="")
    # ``name_id_key(name_id, name_id_format)``, kept by save(): what a sign-in looks the link up by.
    name_id_key = models.CharField(max_length=KEY_MAX_LENGTH, editable=False, db_default="")
    # ``name_id_lookalike(name_id)``, kept by save(): only refuses a new link that reads as this one.
    name_id_lookalike = models.CharField(max_length=64, editable=False, db_default="")
    idp_slug = models.CharField(max_length=40)
    # The IdP the link belongs to, whatever slug it has later (accounts.saml.links.link_idp_bind):
    # its entity id, and its admin row's trust_nonce ("" for a settings entry, or a row from before the
    # nonce was kept). Another IdP given its slug (a row deleted and added again, a settings entry
    # naming another entity id) does not sign its person in. None: bound to no IdP yet (a site admin
    # named a slug no IdP has, or code older than these columns made it while a deploy rolled): the
    # IdP of its slug binds it at its next sign-in. "" (migration 0027): its IdP was gone by then.
    idp_entity_id = models.CharField(max_length=500, null=True, blank=True, editable=False)
    idp_trust_nonce = models.CharField(max_length=64, blank=True, default="", db_default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    # Its update() and bulk_create() on the record too (accounts.models.trailed).
    objects = TrailedQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "SAML identities"
        constraints = [
            # "" only on a link added by code older than the key (a rolling deploy): found as a legacy link.
            models.UniqueConstraint(
                fields=["identity_store", "name_id_key"],
                condition=~models.Q(name_id_key=""),
                name="saml_identity_unique_store_key",
            ),
            # Two email-like links of one store never read alike (accounts.saml.services refuses the second).
            models.UniqueConstraint(
                fields=["identity_store", "name_id_lookalike"],
                condition=models.Q(name_id_format__in=[EMAIL_ADDRESS, UNSPECIFIED]) & ~models.Q(name_id_lookalike=""),
                name="saml_identity_unique_store_lookalike",
            ),
        ]
        indexes = [models.Index(fields=["identity_store", "name_id"], name="saml_identity_store_name_id")]

    def __str__(self) -> str:
        # The IdP's NameID, on admin pages and in the admin trail: its hidden characters as escapes.
        return f"{self.identity_store}:{visible(self.name_id)} -> {self.user_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """The keys are derived from the NameID and its Format at every save that writes either."""
        update_fields = kwargs.get("update_fields")
        if update_fields is None or {"name_id", "name_id_format"} & set(update_fields):
            self.name_id_key = name_id_key(self.name_id, self.name_id_format)
            self.name_id_lookalike = name_id_lookalike(self.name_id)
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "name_id_key", "name_id_lookalike"}
        super().save(*args, **kwargs)


class SamlAssertionUse(models.Model):
    """An assertion that was accepted once; its row refuses a replay until it expires.

    It also carries the checked result from the ACS POST to the finishing GET (where the
    session cookie is sent): `handoff_hash` is the SHA-256 of the one-time cookie value.
    """

    idp_slug = models.CharField(max_length=40)
    assertion_id = models.CharField(max_length=256)
    expires_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    handoff_hash = models.CharField(max_length=64, unique=True)
    payload = models.JSONField(default=dict)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["idp_slug", "assertion_id"], name="saml_assertion_used_once")]
        indexes = [models.Index(fields=["expires_at"], name="saml_assertion_expiry")]

    def __str__(self) -> str:
        return f"assertion {self.assertion_id} from {self.idp_slug}"
