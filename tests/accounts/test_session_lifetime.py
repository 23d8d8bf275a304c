"""A signed-in session ends at a fixed time after its sign-in, whatever writes it, and no later
than its identity provider says; pages, the API, the CLI's device confirmation and the session
WebSockets all see it end."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.test import Client
from lxml import etree

from accounts.session_lifetime import SIGNED_IN_AT_KEY
from audit.models import LogbookEntry
from devcloud.idp import NSMAP, SAML, SAMLP, STATUS_SUCCESS
from devcloud.idp.messages import instant, new_id
from terminal import services as terminal_services
from terminal.models import TerminalTicket
from tests.accounts.test_mfa import password_sign_in
from tests.accounts.test_saml import CAROL, CUSTOMER, idps, post, sign_in, signed_in_user, start  # noqa: F401
from tests.conftest import World
from tests.terminal.helpers import communicator
from tests.terminal.test_consumers import make_active_grant


def session_row(client: Client) -> Session:
    return Session.objects.get(session_key=client.cookies["sessionid"].value)


def write_session(client: Client) -> None:
    """Any write of the session (a view that stores something in it): Django moves its expiry."""
    session = client.session
    session["something"] = datetime.now(UTC).isoformat()
    session.save()


def signed_out_by_the_limit() -> list[dict[str, Any]]:
    return [
        entry.detail
        for entry in LogbookEntry.objects.filter(action="auth.signed_out").order_by("id")
        if entry.detail.get("by") == "session_limit"
    ]


def test_a_signed_in_person_asking_for_a_saml_sign_in_is_sent_on_and_the_session_is_not_written(
    world: World,
) -> None:
    client = Client()
    t0 = datetime.now(UTC)
    sign_in(client, "customer", CUSTOMER, CAROL)
    expiry = session_row(client).expire_date
    with time_machine.travel(t0 + timedelta(hours=7), tick=False):
        response = client.get("/accounts/saml/customer/login/?next=/logbook/")
        assert response.status_code == 302 and response["Location"] == "/logbook/"
    assert session_row(client).expire_date == expiry


def test_a_session_does_not_outlive_its_eight_hours(world: World) -> None:
    """The reviewer's case: a SAML sign-in, the IdP then drops the person; asking for a new
    sign-in now and then (never followed to the IdP) kept the session, and its CLI minting, alive."""
    client = Client()
    t0 = datetime.now(UTC)
    sign_in(client, "customer", CUSTOMER, CAROL)
    carol = signed_in_user(client)
    assert carol is not None
    for hours in (7, 14, 21):
        with time_machine.travel(t0 + timedelta(hours=hours), tick=False):
            assert client.get("/accounts/saml/customer/login/").status_code == 302
    with time_machine.travel(t0 + timedelta(hours=24), tick=False):
        page = client.get("/requests/")
        started = Client().post("/api/cli/device/", {"client_name": "x"}, content_type="application/json").json()
        client.post("/cli/device/", {"user_code": started["user_code"]})
        token = Client().post(
            "/api/cli/token/", {"device_code": started["device_code"]}, content_type="application/json"
        )
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    assert token.status_code != 200 and "access_token" not in token.json()


@pytest.mark.parametrize("first_seen_by", ["/requests/", "/api/requests/"])
def test_a_session_written_often_still_ends_at_its_limit(world: World, settings: Any, first_seen_by: str) -> None:
    settings.PASSPORT_SESSION_MAX_AGE_SECONDS = 3600  # the session cookie still lasts 8 hours
    client = Client()
    t0 = datetime.now(UTC)
    with time_machine.travel(t0, tick=False):
        password_sign_in(client, world.requester.username)  # a local sign-in, through allauth
    for minutes in (20, 40, 59):
        with time_machine.travel(t0 + timedelta(minutes=minutes), tick=False):
            write_session(client)
            assert client.get(first_seen_by).status_code == 200
    with time_machine.travel(t0 + timedelta(minutes=61), tick=False):
        assert client.get(first_seen_by).status_code in (302, 401, 403)
        page = client.get("/requests/")
        api = client.get("/api/requests/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    assert api.status_code in (401, 403)
    [ended] = signed_out_by_the_limit()
    assert ended["reason"] == "max_age"
    assert ended["signed_in_at"] == t0.isoformat()
    assert LogbookEntry.objects.filter(action="auth.signed_out", actor=world.requester).count() == 1


def test_a_session_from_before_the_upgrade_starts_its_lifetime_at_first_sight(world: World, settings: Any) -> None:
    settings.PASSPORT_SESSION_MAX_AGE_SECONDS = 3600
    client = Client()
    t0 = datetime.now(UTC)
    with time_machine.travel(t0, tick=False):
        client.force_login(world.requester)
        session = client.session
        del session[SIGNED_IN_AT_KEY]  # signed in before the rule: no stamp
        session.save()
    with time_machine.travel(t0 + timedelta(hours=2), tick=False):
        assert client.get("/requests/").status_code == 200  # not signed out on sight
    with time_machine.travel(t0 + timedelta(hours=2, minutes=59), tick=False):
        assert client.get("/requests/").status_code == 200
    with time_machine.travel(t0 + timedelta(hours=3, minutes=1), tick=False):
        assert client.get("/requests/").status_code == 302
    assert [entry["signed_in_at"] for entry in signed_out_by_the_limit()] == [(t0 + timedelta(hours=2)).isoformat()]


def test_the_session_ends_when_the_idp_says_it_does(world: World) -> None:
    client = Client()
    t0 = datetime.now(UTC)
    request_id, acs, audience = start(client, "customer")
    assertion = CUSTOMER.assertion_xml(audience=audience, recipient=acs, person=CAROL, in_response_to=request_id)
    assertion.find(f"{{{SAML}}}AuthnStatement").set("SessionNotOnOrAfter", instant(t0 + timedelta(minutes=2)))
    signed = CUSTOMER.sign_element(assertion)
    response = etree.Element(f"{{{SAMLP}}}Response", nsmap=NSMAP, ID=new_id(), Version="2.0")
    response.set("IssueInstant", instant(t0))
    response.set("Destination", acs)
    response.set("InResponseTo", request_id)
    etree.SubElement(response, f"{{{SAML}}}Issuer").text = CUSTOMER.entity_id
    status = etree.SubElement(response, f"{{{SAMLP}}}Status")
    etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value=STATUS_SUCCESS)
    response.append(signed)
    assert post(client, "customer", base64.b64encode(etree.tostring(response)).decode()).status_code == 302

    with time_machine.travel(t0 + timedelta(minutes=1), tick=False):
        assert client.get("/requests/").status_code == 200
    with time_machine.travel(t0 + timedelta(minutes=3), tick=False):
        assert client.get("/requests/").status_code == 302
    [ended] = signed_out_by_the_limit()
    assert ended["reason"] == "idp_session_end"


@pytest.mark.usefixtures("live_db")  # the WebSocket's middleware reads the database from another thread
def test_a_terminal_websocket_with_a_session_past_its_limit_is_refused_and_signed_out(world: World) -> None:
    grant = make_active_grant(world)
    client = Client()
    client.force_login(world.requester)
    key = client.cookies["sessionid"].value
    session = SessionStore(session_key=key)
    session[SIGNED_IN_AT_KEY] = (datetime.now(UTC) - timedelta(hours=9)).timestamp()  # still in its cookie's age
    session.save()
    ticket = terminal_services.ticket_issue(user=world.requester, grant=grant)

    async def handshake() -> tuple[bool, int | None]:
        comm = communicator(grant.pk, ticket, cookie=f"sessionid={key}")
        connected, code = await comm.connect(timeout=5)
        if connected:
            await comm.disconnect()
        return connected, code

    assert async_to_sync(handshake)() == (False, 4401)  # as to someone not signed in
    assert TerminalTicket.objects.get().used_at is None
    assert not Session.objects.filter(session_key=key).exists()
    [ended] = signed_out_by_the_limit()
    assert ended["reason"] == "max_age"


def _cli_sign_in(client: Client) -> dict[str, Any]:
    """`passport auth login` confirmed in this browser session; the token endpoint's answer."""
    started = Client().post("/api/cli/device/", {"client_name": "laptop"}, content_type="application/json").json()
    assert client.post("/cli/device/", {"user_code": started["user_code"]}).status_code == 200
    issued = Client().post("/api/cli/token/", {"device_code": started["device_code"]}, content_type="application/json")
    return {"status": issued.status_code, **issued.json()}


def test_a_cli_token_ends_when_the_session_that_signed_it_in_does(world: World, settings: Any) -> None:
    # Confirmed in the last minute of a one-hour session: the token must not act for 12 more hours.
    settings.PASSPORT_SESSION_MAX_AGE_SECONDS = 3600
    client = Client()
    t0 = datetime.now(UTC)
    with time_machine.travel(t0, tick=False):
        password_sign_in(client, world.requester.username)
    with time_machine.travel(t0 + timedelta(minutes=59), tick=False):
        issued = _cli_sign_in(client)
    assert issued["status"] == 200 and issued["expires_in"] == 60
    token = world.requester.api_tokens.get()
    assert token.expires_at == t0.replace(microsecond=token.expires_at.microsecond) + timedelta(hours=1)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {issued['access_token']}"}
    with time_machine.travel(t0 + timedelta(minutes=59, seconds=30), tick=False):
        assert Client().get("/api/requests/", **bearer).status_code == 200
    with time_machine.travel(t0 + timedelta(hours=6), tick=False):
        assert client.get("/requests/").status_code == 302
        assert Client().get("/api/requests/", **bearer).status_code == 401


def test_a_code_confirmed_by_a_session_that_has_since_ended_gets_no_token(world: World, settings: Any) -> None:
    settings.PASSPORT_SESSION_MAX_AGE_SECONDS = 3600
    client = Client()
    t0 = datetime.now(UTC)
    with time_machine.travel(t0, tick=False):
        password_sign_in(client, world.requester.username)
    with time_machine.travel(t0 + timedelta(minutes=59, seconds=50), tick=False):
        started = Client().post("/api/cli/device/", {}, content_type="application/json").json()
        assert client.post("/cli/device/", {"user_code": started["user_code"]}).status_code == 200
    with time_machine.travel(t0 + timedelta(minutes=60, seconds=1), tick=False):
        answer = Client().post(
            "/api/cli/token/", {"device_code": started["device_code"]}, content_type="application/json"
        )
    assert answer.status_code == 400 and answer.json()["error"] == "expired_token"
    assert not world.requester.api_tokens.exists()
