"""A CLI token or confirmed code lives only as long as the IdP that vouched for it is the one it was:
a settings IdP (PASSPORT_SAML_IDPS, no save to hear) given a new certificate ends them as it ends
the browser session (accounts.cli_tokens.idp_trust_refusal).

As in test_saml.py, nothing of Passport's is mocked: the test IdPs sign real XML.
"""

from __future__ import annotations

from typing import Any

from django.test import Client

from accounts.models import ApiToken
from accounts.saml.config import certificate_body
from audit.models import LogbookEntry
from devcloud.idp import TestIdentityProvider
from tests.accounts.test_saml import CAROL, CUSTOMER, idp_entry, sign_in, signed_in_user
from tests.accounts.test_saml_idp_withdrawn import _cli_sign_in, _confirmed_code, _exchange
from tests.conftest import World


def _signed_in_with_token(settings: Any) -> tuple[Client, str, str]:
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", CUSTOMER, "customer")]
    client = Client()
    sign_in(client, "customer", CUSTOMER, CAROL)  # e.g. an assertion forged with a leaked key
    assert signed_in_user(client) is not None
    return client, _cli_sign_in(client), _confirmed_code(client)


def test_a_settings_idps_new_certificate_ends_the_cli_tokens_and_codes_its_sessions_confirmed(
    world: World, settings: Any
) -> None:
    client, token, code = _signed_in_with_token(settings)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert Client().get("/api/requests/", **bearer).status_code == 200

    # The operator replaces the leaked certificate in PASSPORT_SAML_IDPS.
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", TestIdentityProvider(CUSTOMER.entity_id), "customer")]

    assert client.get("/requests/").status_code == 302  # the browser session ends (idp_replaced)
    assert Client().get("/api/requests/", **bearer).status_code == 401
    assert _exchange(code).status_code == 400
    refused = LogbookEntry.objects.filter(action="cli.token_refused").latest("pk")
    assert refused.detail["reason"] == "idp_replaced"
    # For good: revoked, so that what it opened (proxy connections, Session Manager sessions) ends too.
    assert not ApiToken.objects.exists()
    assert LogbookEntry.objects.get(action="cli.token_revoked").detail["reason"] == "idp_replaced"
    assert LogbookEntry.objects.filter(action="cli.token_issued").count() == 1  # the code made none


def test_the_same_certificate_keeps_them_and_one_taken_out_is_withdrawn(world: World, settings: Any) -> None:
    _, token, code = _signed_in_with_token(settings)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    # The same entry written again (its body without the PEM lines) is the same IdP.
    entry = idp_entry("customer", CUSTOMER, "customer")
    settings.PASSPORT_SAML_IDPS = [{**entry, "x509cert": certificate_body(entry["x509cert"])}]
    assert Client().get("/api/requests/", **bearer).status_code == 200
    assert _exchange(code).status_code == 200
    settings.PASSPORT_SAML_IDPS = []
    assert Client().get("/api/requests/", **bearer).status_code == 401
    assert LogbookEntry.objects.filter(action="cli.token_refused").latest("pk").detail["reason"] == "idp_withdrawn"


def test_a_token_that_names_its_idp_but_no_trust_is_refused(world: World, settings: Any) -> None:
    """Issued before tokens kept their IdP's trust: nothing tells it came from the IdP as it is now."""
    _, token, _ = _signed_in_with_token(settings)
    ApiToken.objects.update(idp_trust=None)
    assert Client().get("/api/requests/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert LogbookEntry.objects.filter(action="cli.token_refused").latest("pk").detail["reason"] == "idp_replaced"
