"""The CLI's sign-in: device codes and the tokens they become."""

from __future__ import annotations

from django.db import models

from accounts.models.people import User
from accounts.models.trailed import TrailedQuerySet
from core.text import visible


class ApiToken(models.Model):
    """A bearer token for the CLI and scripts. Only its SHA-256 is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The SAML identity provider the confirming browser session was signed in through ("" for another
    # sign-in; None: issued before this was kept). Disabling or deleting that IdP revokes the token
    # (accounts.saml.withdrawal).
    idp_slug = models.CharField(max_length=40, null=True, blank=True, verbose_name="signed in through IdP")
    # That IdP's trust as the confirming session recorded it (accounts.saml.config.identity_provider_trust;
    # None: not SAML, or issued before this was kept): the token is refused once the IdP is another
    # (a new certificate, even one set in PASSPORT_SAML_IDPS: accounts.cli_tokens.api_token_idp_refusal).
    idp_trust = models.CharField(max_length=64, null=True, blank=True, editable=False)

    # Its update() on the record too (accounts.models.trailed): whose it is, how long it lives.
    objects = TrailedQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{visible(self.name)} ({self.user})"


class DeviceAuthorization(models.Model):
    """A pending `passport auth login`: the CLI holds the device code, the person confirms the user code.

    Only SHA-256 hashes of both codes are stored; once confirmed, the first poll with the
    device code mints one ApiToken and marks this row used.
    """

    device_code_hash = models.CharField(max_length=64, unique=True)
    user_code = models.CharField(max_length=9, unique=True)  # ABCD-EFGH: short-lived, shown on two screens
    client_name = models.CharField(max_length=100, blank=True)
    # Where and when the code was started (audit.refusals.client_address; None: not an IP address, or
    # started before this was kept): the confirmation page shows both, so that a person sent someone
    # else's code (RFC 8628 section 5.4) can tell it is not their own.
    started_from = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # When the browser session that confirmed the code ends (accounts.session_lifetime): the
    # token it signs in lives no longer than that session would.
    session_ends_at = models.DateTimeField(null=True, blank=True)
    # As ApiToken.idp_slug, from the confirming session; its token inherits it.
    idp_slug = models.CharField(max_length=40, null=True, blank=True)
    # As ApiToken.idp_trust, from the confirming session; checked again at the exchange, then inherited.
    idp_trust = models.CharField(max_length=64, null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)
    # The CLI's last poll while the code was pending: one sooner than the interval is told slow_down.
    last_polled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"device authorization {self.user_code}"
