"""An IdP read from its metadata URL: the certificate its metadata names is part of the trust its
sessions and CLI tokens record (accounts.saml.config.metadata_certificates), so a new one ends
them, and a metadata copy that lapses or a fetch that fails ends nothing.

As in test_saml.py, nothing of Passport's is mocked: the test IdPs sign real XML; the metadata is
put where the portal keeps what it read (the cache), as a fetch would have.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C

from accounts.models import ApiToken
from devcloud.idp import TestIdentityProvider
from tests.accounts.test_saml import CAROL, CUSTOMER, sign_in, signed_in_user
from tests.accounts.test_saml_idp_withdrawn import _cli_sign_in
from tests.conftest import World

COPY = "passport.saml.metadata.customer"  # the 4-hour copy (accounts.saml.config._idp_section)
SECTION = {
    "entityId": CUSTOMER.entity_id,
    "singleSignOnService": {"url": "https://idp.customer.test/sso", "binding": C.BINDING_HTTP_REDIRECT},
    "x509cert": CUSTOMER.cert_pem,
}


@pytest.fixture
def signed_in(settings: Any) -> Client:
    # Nothing listens on port 9: a fetch fails at once.
    settings.PASSPORT_SAML_IDPS = [
        {
            "slug": "customer",
            "name": "Customer SSO",
            "identity_store": "customer",
            "entity_id": CUSTOMER.entity_id,
            "metadata_url": "http://127.0.0.1:9/metadata",
        }
    ]
    cache.set(COPY, SECTION, 3600)
    client = Client()
    response, _ = sign_in(client, "customer", CUSTOMER, CAROL)
    assert response.status_code == 302 and signed_in_user(client) is not None
    assert client.get("/requests/").status_code == 200
    return client


def test_a_metadata_idps_new_certificate_ends_its_sessions_and_tokens(world: World, signed_in: Client) -> None:
    token = _cli_sign_in(signed_in)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert Client().get("/api/requests/", **bearer).status_code == 200
    # The IdP rotated its key (after a leak): its metadata now names only the new certificate.
    new = TestIdentityProvider(CUSTOMER.entity_id)
    cache.set(COPY, {**SECTION, "x509cert": new.cert_pem}, 3600)
    assert signed_in.get("/requests/").status_code == 302
    assert Client().get("/api/requests/", **bearer).status_code == 401
    assert not ApiToken.objects.exists()


def test_a_second_signing_certificate_named_beside_it_is_another_trust(world: World, signed_in: Client) -> None:
    new = TestIdentityProvider(CUSTOMER.entity_id)
    multi = {"signing": [CUSTOMER.cert_pem, new.cert_pem], "encryption": [CUSTOMER.cert_pem]}
    section = {key: value for key, value in SECTION.items() if key != "x509cert"}
    cache.set(COPY, {**section, "x509certMulti": multi}, 3600)
    assert signed_in.get("/requests/").status_code == 302


def test_a_lapsed_copy_or_a_failed_fetch_ends_no_session(world: World, signed_in: Client) -> None:
    cache.delete(COPY)  # four hours later: the copy lapsed, nobody has signed in since
    assert signed_in.get("/requests/").status_code == 200
    # Someone starts a sign-in: the fetch fails (the IdP's metadata host is down).
    failed = Client(raise_request_exception=False).get("/accounts/saml/customer/login/")
    assert failed.status_code == 500
    assert signed_in.get("/requests/").status_code == 200
    # The same certificate pasted back in another form is the same IdP.
    cache.set(COPY, {**SECTION, "x509cert": "".join(CUSTOMER.cert_pem.splitlines()[1:-1])}, 3600)
    assert signed_in.get("/requests/").status_code == 200
