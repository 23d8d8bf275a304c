"""What Passport reads from an assertion python3-saml has accepted, beyond what it hands out.

python3-saml accepts a bearer SubjectConfirmation with no NotOnOrAfter: such an assertion
stays acceptable until its Conditions' NotOnOrAfter plus the allowed clock drift, or for ever
without one, longer than any replay memory. The SAML web browser SSO profile requires the
bearer SubjectConfirmationData to carry NotOnOrAfter, so Passport refuses one without it, and
remembers an assertion id until the latest such time any of its bearer confirmations names
(plus the drift, a bound python3-saml never goes past): no later replay is then accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from accounts.saml.services import SamlRefused

# python3-saml's leeway on the Conditions' times, in seconds.
CLOCK_DRIFT = timedelta(seconds=OneLogin_Saml2_Constants.ALLOWED_CLOCK_DRIFT)


class PassportSamlAuth(OneLogin_Saml2_Auth):
    """python3-saml's Auth, keeping the response it accepted so its times can be read."""

    accepted_response: OneLogin_Saml2_Response | None = None

    def store_valid_response(self, response: OneLogin_Saml2_Response) -> None:
        super().store_valid_response(response)
        self.accepted_response = response


def _bearer_confirmations(response: OneLogin_Saml2_Response) -> list[Any]:
    # The same query python3-saml validates with: the signed assertion's, not any other in the XML.
    nodes = response._query_assertion("/saml:Subject/saml:SubjectConfirmation")
    # python3-saml treats a SubjectConfirmation without Method as bearer.
    return [node for node in nodes if node.get("Method") in (None, OneLogin_Saml2_Constants.CM_BEARER)]


def assertion_acceptable_until(auth: PassportSamlAuth) -> datetime:
    """The latest time python3-saml could accept this assertion again; refuses one that names
    no such time (a bearer confirmation without NotOnOrAfter)."""
    response = auth.accepted_response
    if response is None:
        raise SamlRefused("invalid_response", "The SAML response was not accepted.")
    latest: datetime | None = None
    for node in _bearer_confirmations(response):
        data = node.find("saml:SubjectConfirmationData", namespaces=OneLogin_Saml2_Constants.NSMAP)
        if data is None:
            continue  # python3-saml never confirms with one of these
        value = data.get("NotOnOrAfter")
        if not value:
            raise SamlRefused(
                "no_confirmation_expiry",
                "The assertion's bearer confirmation has no NotOnOrAfter, which SAML sign-in requires.",
            )
        try:
            until = datetime.fromtimestamp(OneLogin_Saml2_Utils.parse_SAML_to_time(value), UTC)
        except (ValueError, OverflowError, OSError):
            raise SamlRefused("malformed", "The assertion's NotOnOrAfter could not be read.", status=400) from None
        latest = until if latest is None or until > latest else latest
    if latest is None:
        raise SamlRefused("no_confirmation_expiry", "The assertion has no bearer confirmation with NotOnOrAfter.")
    return latest + CLOCK_DRIFT


def session_end(auth: PassportSamlAuth) -> datetime | None:
    """The IdP's SessionNotOnOrAfter: Passport's session must not outlive it."""
    value = auth.get_session_expiration()
    return datetime.fromtimestamp(value, UTC) if value else None
