"""A ``next`` on the sign-out (accounts.sign_out_views): a session signed in through SAML is signed
out at its IdP whatever ``next`` the link or form names, from the portal's sign-out and the admin's
alike; a local session still goes on to a ``next`` that stays on the portal."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from audit.models import LogbookEntry
from devcloud.idp import SAML, read_redirect_message
from tests.accounts.test_saml import CAROL, CUSTOMER, idps, sign_in, signed_in_user  # noqa: F401 (idps: autouse)
from tests.conftest import World

pytestmark = pytest.mark.django_db

SLS = "http://testserver/accounts/saml/customer/sls/"


@pytest.mark.parametrize("sign_out_url", ["/accounts/logout/", "/admin/logout/"])
@pytest.mark.parametrize("next_url", ["/requests/", "/", "/accounts/logout/"])
def test_a_saml_sign_out_with_a_next_still_signs_out_at_the_idp(
    world: World, client: Client, sign_out_url: str, next_url: str
) -> None:
    sign_in(client, "customer", CUSTOMER, CAROL)
    carol = signed_in_user(client)
    assert carol is not None

    response = client.post(sign_out_url, {"next": next_url})

    assert response.status_code == 302
    assert signed_in_user(client) is None
    location = urlsplit(response["Location"])
    assert f"https://{location.netloc}{location.path}" == "https://idp.customer.test/slo", response["Location"]
    logout_request = read_redirect_message(parse_qs(location.query)["SAMLRequest"][0])
    assert logout_request.findtext(f"{{{SAML}}}NameID") == CAROL.name_id
    assert LogbookEntry.objects.filter(action="auth.signed_out", actor=carol).exists()
    # The sign-out at the IdP is pending: its answer is matched and lands on the sign-in page.
    answer = CUSTOMER.logout_response_query(destination=SLS, in_response_to=logout_request.get("ID"))
    done = client.get(f"/accounts/saml/customer/sls/?{answer}")
    assert done.status_code == 302 and done["Location"] == "/accounts/login/"


def test_a_saml_sessions_confirmation_page_carries_no_next(world: World, client: Client) -> None:
    sign_in(client, "customer", CUSTOMER, CAROL)

    page = client.get("/accounts/logout/?next=/requests/")

    assert page.status_code == 200 and b"Sign Out" in page.content
    assert b'name="next"' not in page.content
    assert signed_in_user(client) is not None


def test_a_local_session_follows_a_next_on_the_portal(world: World) -> None:
    client = Client()
    client.force_login(world.requester)

    page = client.get("/accounts/logout/?next=/requests/")
    assert b'<input type="hidden" name="next" value="/requests/">' in page.content

    response = client.post("/accounts/logout/", {"next": "/requests/"})
    assert response.status_code == 302 and response["Location"] == "/requests/"
    assert signed_in_user(client) is None
    assert LogbookEntry.objects.filter(action="auth.signed_out", actor=world.requester).exists()


def test_a_local_session_never_follows_a_next_off_the_portal(world: World) -> None:
    client = Client()
    client.force_login(world.requester)

    response = client.post("/accounts/logout/", {"next": "https://elsewhere.example/"})

    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert signed_in_user(client) is None
