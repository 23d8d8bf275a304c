"""An identity provider withdrawn: what it vouched for ends with it.

A site admin disables a ``SamlIdentityProvider`` (its key leaked, the customer left), deletes it, or
renames its slug: nobody signs in through it any more (accounts.saml.config), and nothing it signed
in lives on either:

- browser sessions it signed in end at their next use (accounts.session_lifetime, for pages, the
  API and WebSockets; ``auth.signed_out`` with ``"reason": "idp_disabled"``);
- the CLI tokens confirmed in such a session are revoked (``cli.token_revoked``, reason
  ``idp_disabled``), and the codes confirmed in one but not yet exchanged are voided
  (``cli.device_codes_voided``), here, in the admin's transaction;
- the open terminals of the people it signs in close at once (``saml_idp_withdrawn``, heard by the
  terminal app), as at a sign-out; an open terminal's periodic sign-in check would close it seconds
  later anyway.

Disabling or renaming it also moves its trust generation on
(``SamlIdentityProvider.trust_generation``), as a new certificate or entity id does: every session
records the trust of the IdP that signed it in (accounts.saml.config.identity_provider_trust), so
none it signed in before comes back when it is enabled again or given its old slug back
(accounts.session_lifetime: ``"reason": "idp_replaced"``). Deleted and made again as it was, it is a
new row with a new ``trust_nonce``, part of that trust too. A new certificate or entity id ends the
rest too, as above, while it stays enabled (``cli.token_revoked`` with reason ``idp_replaced``). The
generation is on the record with the change that moved it (``saml_idp.changed``, or the admin's
``admin.changed``). A queryset's update() of the IdP sets off the same, for each row it changed
(``saml_idp_saved_react``, called by accounts.change_trail_bulk).

Renamed or given another entity id, it takes the links it made along (``SamlIdentity.idp_slug`` and
``idp_entity_id``, each on record as ``saml_identity.changed``), so its people sign in again
through it; another IdP given its old slug is not theirs (accounts.saml.links.link_idp_bind).

A token or code from before Passport kept which IdP stood behind it (``idp_slug`` None) is revoked
too when its person can have got it only through this IdP: a SAML identity here and at no other
IdP, and no usable local password.

An IdP taken out of ``PASSPORT_SAML_IDPS`` has no save to hear: its sessions end as above, and its
tokens and codes are refused at their next use (accounts.cli_tokens.api_token_idp_refusal,
accounts.cli_services). Nothing is withdrawn while a settings entry of the same slug stands.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.dispatch import Signal

from accounts import cli_tokens
from accounts.models import ApiToken, DeviceAuthorization, SamlIdentity, SamlIdentityProvider, User
from accounts.saml.config import certificate_body, identity_provider_live, settings_identity_providers
from audit.services import logbook_batch

# Sent inside the withdrawing transaction with ``slug`` and ``user_ids`` (the people this IdP signs
# in): the terminal app closes their open terminals once it commits.
saml_idp_withdrawn = Signal()

# What an IdP's save is compared on: a new slug, the switch, what its trust is made of.
IDP_WATCHED_FIELDS = ("slug", "enabled", "entity_id", "x509cert")


def _people_of(slug: str) -> list[int]:
    """The people this IdP signs in (a person's SAML identity names the one IdP they use)."""
    return sorted(set(SamlIdentity.objects.filter(idp_slug=slug).values_list("user_id", flat=True)))


def _only_through(slug: str, user_ids: list[int]) -> list[int]:
    """Of these people, those who can sign in only through this IdP: no SAML identity at another,
    no usable local password. Their tokens from before ``idp_slug`` was kept came through it."""
    elsewhere = set(
        SamlIdentity.objects.filter(user_id__in=user_ids).exclude(idp_slug=slug).values_list("user_id", flat=True)
    )
    people = User.objects.filter(pk__in=[pk for pk in user_ids if pk not in elsewhere]).only("pk", "password")
    return [person.pk for person in people if not person.has_usable_password()]


def saml_idp_saved_react(*, idp: SamlIdentityProvider, before: dict[str, Any]) -> None:
    """What an IdP's write over ``before`` (its ``IDP_WATCHED_FIELDS`` that the write wrote, as stored
    before it) sets off: a save's, or a queryset update()'s for each row it changed. Disabled,
    renamed, or given another certificate or entity id: its trust generation moves on (the instance
    in hand too, so that saving it again cannot write the old one back), then what it vouched for
    ends. Call it inside the write's transaction."""
    was_enabled = bool(before.get("enabled"))
    disabled = was_enabled and not idp.enabled
    replaced = "entity_id" in before and before["entity_id"] != idp.entity_id
    # The same certificate pasted again in another form (PEM, or its body alone) is no new one.
    replaced |= "x509cert" in before and certificate_body(before["x509cert"]) != certificate_body(idp.x509cert)
    old_slug = before.get("slug", idp.slug)
    # Renamed, enabled or not: given its old slug back, it must not vouch again for what it signed in
    # before (the sessions record its trust, not its slug).
    if disabled or replaced or old_slug != idp.slug:
        # Unrecorded: the entry of the write that moved it says so (accounts.change_trail and
        # change_trail_bulk read the generation from the instance; the admin's from the row).
        rows = SamlIdentityProvider.objects.filter(pk=idp.pk)
        rows.update_unrecorded(trust_generation=F("trust_generation") + 1)
        idp.trust_generation = rows.values_list("trust_generation", flat=True).get()
    if was_enabled and (disabled or old_slug != idp.slug):
        # A new slug is a new IdP to the sessions and tokens: the old one is gone.
        saml_idp_withdraw(slug=old_slug)
    elif replaced and idp.enabled:
        saml_idp_withdraw(slug=idp.slug, replaced=True)
    # Only then: the withdrawal finds the people of the old slug by their links, which move here.
    _links_follow(idp, old_slug=old_slug, old_entity_id=before.get("entity_id", idp.entity_id))


def _links_follow(idp: SamlIdentityProvider, *, old_slug: str, old_entity_id: str) -> None:
    """The links this row made (its old slug, entity id and nonce) follow it when it is renamed or
    given another entity id: it is the same IdP to its people, who sign in again through it. Each
    moved link is on record (``saml_identity.changed``, a queryset update's). Links of another IdP of
    the old slug (a settings entry, a row deleted before) stay where they are."""
    if old_slug == idp.slug and old_entity_id == idp.entity_id:
        return
    mine = SamlIdentity.objects.filter(idp_slug=old_slug, idp_entity_id=old_entity_id, idp_trust_nonce=idp.trust_nonce)
    mine.update(idp_slug=idp.slug, idp_entity_id=idp.entity_id)


def saml_idp_withdraw(*, slug: str, replaced: bool = False) -> int:
    """End what the IdP ``slug`` vouched for, once people may no longer sign in through it, or (with
    ``replaced``) once its admin row's certificate or entity id changed; returns how many tokens were
    revoked. Nothing while a settings entry of that slug stands (it is the IdP people sign in with),
    nor, unless ``replaced``, while an enabled row does; running it twice revokes nothing the second
    time."""
    if replaced:
        if any(configured.slug == slug for configured in settings_identity_providers()):
            return 0
    elif identity_provider_live(slug):
        return 0
    reason = cli_tokens.RevokeReason.IDP_REPLACED if replaced else cli_tokens.RevokeReason.IDP_DISABLED
    # Its Logbook entries at its end, after the code and token rows (as api_tokens_revoke_for_user).
    with transaction.atomic(), logbook_batch():
        people = _people_of(slug)
        vouched = Q(idp_slug=slug) | Q(idp_slug__isnull=True, user_id__in=_only_through(slug, people))
        # The codes first, as accounts.cli_tokens.api_tokens_revoke_for_user does, for the same race.
        cli_tokens.device_authorizations_void(
            authorizations=DeviceAuthorization.objects.filter(vouched), actor=None, reason=reason.value
        )
        revoked = cli_tokens.api_tokens_revoke(tokens=ApiToken.objects.filter(vouched), actor=None, reason=reason)
        saml_idp_withdrawn.send(sender=SamlIdentity, slug=slug, user_ids=people)
    return revoked
