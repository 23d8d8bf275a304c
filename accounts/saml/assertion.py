"""What Passport reads from an assertion python3-saml has accepted, and what it checks beyond it.

python3-saml accepts a bearer SubjectConfirmation with no NotOnOrAfter: such an assertion
stays acceptable until its Conditions' NotOnOrAfter plus the allowed clock drift, or for ever
without one, longer than any replay memory. The SAML web browser SSO profile requires the
bearer SubjectConfirmationData to carry NotOnOrAfter, so Passport refuses one without it, and
remembers an assertion id until the latest such time any of its bearer confirmations names
(plus the drift, a bound python3-saml never goes past): no later replay is then accepted.

python3-saml also skips what is absent: an assertion with no AudienceRestriction, or whose
bearer confirmation names no Recipient, passes its checks, and a Recipient passes when our
address is anywhere inside it. The profile requires both (SAML 2.0 profiles, 4.1.4.2), so
Passport requires its own entity id among the audiences and a bearer confirmation addressed to
exactly its ACS URL (``assertion_answers``). Which sign-in the assertion answers is that
confirmation's InResponseTo, inside the signature: never the Response envelope's, which the IdP
need not sign and anyone holding the assertion can write.
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
_NS = OneLogin_Saml2_Constants.NSMAP


class PassportSamlAuth(OneLogin_Saml2_Auth):
    """python3-saml's Auth, keeping the response it accepted so its times can be read."""

    accepted_response: OneLogin_Saml2_Response | None = None

    def store_valid_response(self, response: OneLogin_Saml2_Response) -> None:
        super().store_valid_response(response)
        self.accepted_response = response


def _accepted(auth: PassportSamlAuth) -> OneLogin_Saml2_Response:
    if auth.accepted_response is None:
        raise SamlRefused("invalid_response", "The SAML response was not accepted.")
    return auth.accepted_response


def _bearer_confirmations(response: OneLogin_Saml2_Response) -> list[Any]:
    # The same query python3-saml validates with: the signed assertion's, not any other in the XML.
    nodes = response._query_assertion("/saml:Subject/saml:SubjectConfirmation")
    # python3-saml's own rule (``if method and method != bearer: continue``): a Method absent or
    # empty counts as bearer, so such a confirmation can sign in and its end must be remembered.
    return [node for node in nodes if node.get("Method") in (None, "", OneLogin_Saml2_Constants.CM_BEARER)]


def _time(value: str) -> int:
    try:
        return int(OneLogin_Saml2_Utils.parse_SAML_to_time(value))
    except (ValueError, OverflowError, OSError):
        raise SamlRefused("malformed", "The assertion's times could not be read.", status=400) from None


def assertion_acceptable_until(auth: PassportSamlAuth) -> datetime:
    """The latest time python3-saml could accept this assertion again; refuses one that names
    no such time (a bearer confirmation without NotOnOrAfter)."""
    latest: datetime | None = None
    for node in _bearer_confirmations(_accepted(auth)):
        data = node.find("saml:SubjectConfirmationData", namespaces=_NS)
        if data is None:
            continue  # python3-saml never confirms with one of these
        value = data.get("NotOnOrAfter")
        if not value:
            raise SamlRefused(
                "no_confirmation_expiry",
                "The assertion's bearer confirmation has no NotOnOrAfter, which SAML sign-in requires.",
            )
        until = datetime.fromtimestamp(_time(value), UTC)
        latest = until if latest is None or until > latest else latest
    if latest is None:
        raise SamlRefused("no_confirmation_expiry", "The assertion has no bearer confirmation with NotOnOrAfter.")
    return latest + CLOCK_DRIFT


def assertion_answers(auth: PassportSamlAuth) -> str:
    """The id of the AuthnRequest the accepted assertion answers, "" for none (IdP-initiated).

    Refuses an assertion not addressed to Passport: our entity id must be among its audiences,
    and one of its bearer confirmations, valid now, must name exactly our ACS URL as Recipient.
    The InResponseTo is that confirmation's; confirmations that disagree about it are refused.
    """
    response = _accepted(auth)
    sp = auth.get_settings().get_sp_data()
    if sp["entityId"] not in response.get_audiences():
        raise SamlRefused("wrong_audience", "The assertion is not addressed to Passport (no audience names it).")
    now = OneLogin_Saml2_Utils.now()
    answers: set[str] = set()
    for node in _bearer_confirmations(response):
        data = node.find("saml:SubjectConfirmationData", namespaces=_NS)
        if data is None or data.get("Recipient") != sp["assertionConsumerService"]["url"]:
            continue
        not_on_or_after, not_before = data.get("NotOnOrAfter"), data.get("NotBefore")
        if not not_on_or_after or _time(not_on_or_after) <= now or (not_before and _time(not_before) > now):
            continue
        answers.add(data.get("InResponseTo") or "")
    if not answers:
        raise SamlRefused(
            "wrong_recipient", "The assertion is not addressed to Passport (no confirmation names its address)."
        )
    if len(answers) > 1:
        raise SamlRefused("ambiguous_request", "The assertion's confirmations answer different sign-ins.")
    return answers.pop()


def session_end(auth: PassportSamlAuth) -> datetime | None:
    """The IdP's SessionNotOnOrAfter: Passport's session must not outlive it."""
    value = auth.get_session_expiration()
    return datetime.fromtimestamp(value, UTC) if value else None
