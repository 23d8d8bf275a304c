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

A token or code from before Passport kept which IdP stood behind it (``idp_slug`` None) is revoked
too when its person can have got it only through this IdP: a SAML identity here and at no other
IdP, and no usable local password.

An IdP taken out of ``PASSPORT_SAML_IDPS`` has no save to hear: its sessions end as above, and its
tokens and codes are refused at their next use (accounts.cli_tokens.api_token_idp_live,
accounts.cli_services). Nothing is withdrawn while a settings entry of the same slug stands.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.dispatch import Signal

from accounts import cli_tokens
from accounts.models import ApiToken, DeviceAuthorization, SamlIdentity, User
from accounts.saml.config import identity_provider_live
from audit.services import logbook_batch

# Sent inside the withdrawing transaction with ``slug`` and ``user_ids`` (the people this IdP signs
# in): the terminal app closes their open terminals once it commits.
saml_idp_withdrawn = Signal()


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


def saml_idp_withdraw(*, slug: str) -> int:
    """End what the IdP ``slug`` vouched for, once people may no longer sign in through it; returns
    how many tokens were revoked. Nothing while it is still live (a settings entry of that slug, or
    an enabled row); running it twice revokes nothing the second time."""
    if identity_provider_live(slug):
        return 0
    reason = cli_tokens.RevokeReason.IDP_DISABLED
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
