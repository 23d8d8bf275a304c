"""What Passport checks of an IdP's LogoutRequest beyond python3-saml, before it signs anyone out.

python3-saml checks the signature, the Destination and a NotOnOrAfter if there is one; nothing
else stops a LogoutRequest that was already used (a logout URL in browser history, a proxy log, a
Referer) from signing the person out again, later, from another IdP session. So Passport acts
on one only:

- while it is fresh: issued (``IssueInstant``) no more than ``LOGOUT_REQUEST_MAX_AGE`` ago, plus
  python3-saml's clock drift (and not later than now plus that drift): ``stale_logout``;
- once: its ID is remembered in the cache (shared by every process) until it would be stale
  anyway: ``replayed_logout``;
- against the session it names: when it names SessionIndex values, the person's session is ended
  only if the one its sign-in recorded is among them (``other_session``: answered, not acted on).

Each refusal is ``auth.saml_refused`` with that reason (accounts.saml.services.saml_refusal_record).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.utils import timezone
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from accounts.saml.assertion import CLOCK_DRIFT
from accounts.saml.config import IdentityProvider
from accounts.saml.services import SamlRefused

LOGOUT_REQUEST_MAX_AGE = timedelta(minutes=5)


def _issued_at(xml: str) -> datetime:
    instant = OneLogin_Saml2_XML.to_etree(xml).get("IssueInstant") or ""
    try:
        return datetime.fromtimestamp(OneLogin_Saml2_Utils.parse_SAML_to_time(instant), UTC)
    except ValueError:
        raise SamlRefused("stale_logout", "The logout request names no time it was issued.", status=400) from None


def logout_request_claim(*, idp: IdentityProvider, xml: str) -> None:
    """Accept this LogoutRequest (python3-saml accepted its signature) once, while it is fresh;
    SamlRefused (``stale_logout``, ``replayed_logout``) otherwise."""
    now = timezone.now()
    issued_at = _issued_at(xml)
    stale_at = issued_at + LOGOUT_REQUEST_MAX_AGE + CLOCK_DRIFT
    if stale_at <= now or issued_at > now + CLOCK_DRIFT:
        raise SamlRefused("stale_logout", "The logout request is too old, or from the future.", status=400)
    request_id = OneLogin_Saml2_Logout_Request.get_id(xml) or ""
    digest = hashlib.sha256(f"{idp.slug}\n{idp.entity_id}\n{request_id}".encode()).hexdigest()
    # add() writes only if absent, in one statement the database keeps unique: one process wins.
    remembered = cache.add(f"passport.saml.logout_request.{digest}", 1, int((stale_at - now).total_seconds()) + 1)
    if not request_id or not remembered:
        raise SamlRefused("replayed_logout", "This logout request was already used.", status=400)


def logout_request_names_session(*, xml: str, sign_in: Mapping[str, Any]) -> bool:
    """Whether the LogoutRequest is for this session (``sign_in``: what its SAML sign-in recorded):
    it names no SessionIndex (all the person's sessions at the IdP), or the one the session has."""
    indexes = OneLogin_Saml2_Logout_Request.get_session_indexes(xml)
    return not indexes or sign_in.get("session_index") in indexes
