"""An IdP's LogoutRequest signs out once, while fresh, and only the session it names
(accounts.saml.logout).

As in test_saml.py, nothing of Passport's is mocked: the test IdPs sign real XML.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.test import Client

from audit.models import LogbookEntry
from tests.accounts.test_saml import CAROL, CUSTOMER, idps, sign_in, signed_in_user  # noqa: F401  (idps: autouse)
from tests.conftest import World

SLS = "http://testserver/accounts/saml/customer/sls/"


def _refusal_reasons() -> list[str]:
    return [entry.detail["reason"] for entry in LogbookEntry.objects.filter(action="auth.saml_refused")]


def test_a_used_logout_request_does_not_sign_out_a_later_session(world: World) -> None:
    client = Client()
    sign_in(client, "customer", CUSTOMER, CAROL)
    query = CUSTOMER.logout_request_query(destination=SLS, name_id=CAROL.name_id)
    assert client.get(f"/accounts/saml/customer/sls/?{query}").status_code == 302
    assert signed_in_user(client) is None
    # Carol signs in again: a new IdP session. Anyone holding the old logout URL (browser history, a
    # proxy log, a Referer) replays it: a link followed is a top-level GET with the session cookie.
    sign_in(client, "customer", CUSTOMER, CAROL)
    assert client.get(f"/accounts/saml/customer/sls/?{query}").status_code == 400
    assert signed_in_user(client) is not None
    assert _refusal_reasons() == ["replayed_logout"]


def test_a_stale_logout_request_is_refused(world: World) -> None:
    client = Client()
    sign_in(client, "customer", CUSTOMER, CAROL)
    for issued_at in (datetime.now(UTC) - timedelta(minutes=10), datetime.now(UTC) + timedelta(minutes=10)):
        query = CUSTOMER.logout_request_query(destination=SLS, name_id=CAROL.name_id, issued_at=issued_at)
        assert client.get(f"/accounts/saml/customer/sls/?{query}").status_code == 400
    assert signed_in_user(client) is not None
    assert _refusal_reasons() == ["stale_logout"]  # aggregated: one entry and a count


def test_a_logout_request_for_another_idp_session_leaves_this_one(world: World) -> None:
    client = Client()
    sign_in(client, "customer", CUSTOMER, CAROL, session_index="idp-session-1")
    other = CUSTOMER.logout_request_query(destination=SLS, name_id=CAROL.name_id, session_index="idp-session-0")
    response = client.get(f"/accounts/saml/customer/sls/?{other}")
    assert response.status_code == 302 and "SAMLResponse" in response["Location"]
    assert signed_in_user(client) is not None
    assert _refusal_reasons() == ["other_session"]
    this = CUSTOMER.logout_request_query(destination=SLS, name_id=CAROL.name_id, session_index="idp-session-1")
    assert client.get(f"/accounts/saml/customer/sls/?{this}").status_code == 302
    assert signed_in_user(client) is None
