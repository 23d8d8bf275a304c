"""What a SAML sign-in must not be stretched to: an assertion used again after its replay memory,
a group granting on every account of a name, and one IdP signing in another IdP's person.

As in test_saml.py, nothing of Passport's is mocked: the test IdPs sign real XML.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.test import Client
from lxml import etree

from accounts.models import Membership, SamlAssertionUse, SamlIdentity
from audit.models import LogbookEntry
from devcloud.idp import NSMAP, SAML, SAMLP, STATUS_SUCCESS, Person, TestIdentityProvider, read_redirect_message
from devcloud.idp.messages import instant, new_id
from tests.accounts.test_saml import (  # noqa: F401  (idps: the autouse fixture)
    CAROL,
    CUSTOMER,
    idp_entry,
    idps,
    last_refusal,
    post,
    sign_in,
    signed_in_user,
    start,
)
from tests.conftest import World
from tests.factories import make_account, make_user

PARTNER = TestIdentityProvider("https://idp.partner.test/metadata")


def envelope(idp: TestIdentityProvider, signed_assertion: etree._Element, *, acs: str, in_response_to: str) -> str:
    """An unsigned Response around an assertion the test shaped and then had the IdP sign."""
    response = etree.Element(f"{{{SAMLP}}}Response", nsmap=NSMAP)
    response.set("ID", new_id())
    response.set("Version", "2.0")
    response.set("IssueInstant", instant(datetime.now(UTC)))
    response.set("Destination", acs)
    response.set("InResponseTo", in_response_to)
    etree.SubElement(response, f"{{{SAML}}}Issuer").text = idp.entity_id
    status = etree.SubElement(response, f"{{{SAMLP}}}Status")
    etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value=STATUS_SUCCESS)
    response.append(signed_assertion)
    return base64.b64encode(etree.tostring(response)).decode()


def unsolicited(saml_response: str) -> str:
    """Drop the unsigned envelope's InResponseTo: the same assertion, now as an IdP-initiated sign-in."""
    root = etree.fromstring(base64.b64decode(saml_response))
    del root.attrib["InResponseTo"]
    return base64.b64encode(etree.tostring(root)).decode()


# --- an assertion is refused again for as long as python3-saml would accept it -------------------


def test_a_bearer_confirmation_without_not_on_or_after_is_refused(world: World, settings: Any) -> None:
    """python3-saml would accept it until the Conditions end (plus drift), or for ever."""
    client = Client()
    request_id, acs, audience = start(client, "customer")
    assertion = CUSTOMER.assertion_xml(
        audience=audience, recipient=acs, person=CAROL, in_response_to=request_id, lifetime=timedelta(hours=8)
    )
    del assertion.find(f".//{{{SAML}}}SubjectConfirmationData").attrib["NotOnOrAfter"]
    saml = envelope(CUSTOMER, CUSTOMER.sign_element(assertion), acs=acs, in_response_to=request_id)

    response = post(client, "customer", saml)

    assert response.status_code == 403
    assert signed_in_user(client) is None
    assert last_refusal().detail["reason"] == "no_confirmation_expiry"
    assert not SamlAssertionUse.objects.exists()


def test_a_confirmation_with_an_empty_method_is_a_bearer_one_and_needs_not_on_or_after_too(world: World) -> None:
    """python3-saml takes a SubjectConfirmation whose Method is empty as bearer (``if method and
    method != bearer``): one without NotOnOrAfter could sign in for as long as the Conditions allow.
    (Without a Method at all the schema refuses it.)"""
    client = Client()
    request_id, acs, audience = start(client, "customer")
    assertion = CUSTOMER.assertion_xml(
        audience=audience, recipient=acs, person=CAROL, in_response_to=request_id, lifetime=timedelta(hours=8)
    )
    confirmation = assertion.find(f".//{{{SAML}}}SubjectConfirmation")
    confirmation.find(f"{{{SAML}}}SubjectConfirmationData").set(
        "NotOnOrAfter", instant(datetime.now(UTC) + timedelta(minutes=5))
    )
    unbounded = etree.fromstring(etree.tostring(confirmation))
    del unbounded.find(f"{{{SAML}}}SubjectConfirmationData").attrib["NotOnOrAfter"]
    unbounded.set("Method", "")
    confirmation.addnext(unbounded)
    saml = envelope(CUSTOMER, CUSTOMER.sign_element(assertion), acs=acs, in_response_to=request_id)

    response = post(client, "customer", saml)

    assert response.status_code == 403
    assert signed_in_user(client) is None
    assert last_refusal().detail["reason"] == "no_confirmation_expiry"
    assert not SamlAssertionUse.objects.exists()


@pytest.mark.parametrize("later_method", ["urn:oasis:names:tc:SAML:2.0:cm:bearer", ""])
def test_a_used_assertion_is_refused_for_as_long_as_it_could_be_accepted(
    world: World, settings: Any, later_method: str
) -> None:
    settings.PASSPORT_SAML_IDPS = [{**idp_entry("customer", CUSTOMER, "customer"), "allow_idp_initiated": True}]
    victim, attacker = Client(), Client()
    request_id, acs, audience = start(victim, "customer")
    t0 = datetime.now(UTC)
    # Valid for 9 hours, far beyond any fixed replay memory: its first bearer confirmation ends
    # after 2 hours, a second one after 9 (python3-saml takes whichever of them still holds).
    assertion = CUSTOMER.assertion_xml(
        audience=audience, recipient=acs, person=CAROL, in_response_to=request_id, lifetime=timedelta(hours=9)
    )
    confirmation = assertion.find(f".//{{{SAML}}}SubjectConfirmation")
    later = etree.fromstring(etree.tostring(confirmation))
    later.set("Method", later_method)  # empty: bearer to python3-saml all the same
    confirmation.find(f"{{{SAML}}}SubjectConfirmationData").set("NotOnOrAfter", instant(t0 + timedelta(hours=2)))
    confirmation.addnext(later)
    del assertion.find(f"{{{SAML}}}AuthnStatement").attrib["SessionNotOnOrAfter"]  # no end of its own
    captured = envelope(CUSTOMER, CUSTOMER.sign_element(assertion), acs=acs, in_response_to=request_id)
    assert post(victim, "customer", captured).status_code == 302
    carol = signed_in_user(victim)
    assert carol is not None

    for after in (timedelta(minutes=61), timedelta(hours=8, minutes=30)):
        with time_machine.travel(t0 + after, tick=False):
            response = post(attacker, "customer", unsolicited(captured))
            assert response.status_code == 403
            assert signed_in_user(attacker) is None, f"replayed {after} later"
            assert last_refusal().detail["reason"] == "replayed"
    # Kept until the latest end any of its confirmations names, plus python3-saml's clock drift.
    remembered = SamlAssertionUse.objects.get()
    assert remembered.expires_at >= t0 + timedelta(hours=9, minutes=5) - timedelta(seconds=2)


# --- an assertion is addressed to Passport, and answers the sign-in its signed part names ----------


def _shaped(client: Client, shape: str) -> str:
    """A sign-in's assertion, signed after ``shape`` took from it what python3-saml does not insist on."""
    request_id, acs, audience = start(client, "customer")
    assertion = CUSTOMER.assertion_xml(audience=audience, recipient=acs, person=CAROL, in_response_to=request_id)
    data = assertion.find(f".//{{{SAML}}}SubjectConfirmationData")
    if shape == "no audience":  # minted for any service provider of the IdP
        conditions = assertion.find(f"{{{SAML}}}Conditions")
        conditions.remove(conditions.find(f"{{{SAML}}}AudienceRestriction"))
    elif shape == "no recipient":
        del data.attrib["Recipient"]
    else:  # python3-saml's Recipient check is "our address is somewhere in it"
        data.set("Recipient", f"https://other-sp.example/acs?then={acs}")
    return envelope(CUSTOMER, CUSTOMER.sign_element(assertion), acs=acs, in_response_to=request_id)


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ("no audience", "wrong_audience"),
        ("no recipient", "wrong_recipient"),
        ("a recipient holding our address", "wrong_recipient"),
    ],
)
def test_an_assertion_not_addressed_to_passport_is_refused(world: World, shape: str, reason: str) -> None:
    """The browser SSO profile requires an audience naming the service provider and a bearer
    confirmation whose Recipient is its ACS URL; python3-saml skips absent ones."""
    client = Client()

    response = post(client, "customer", _shaped(client, shape))

    assert response.status_code == 403
    assert signed_in_user(client) is None
    assert last_refusal().detail["reason"] == reason
    assert not SamlAssertionUse.objects.exists()


def test_an_unsolicited_assertion_is_refused_though_its_envelope_names_a_sign_in_this_browser_started(
    world: World,
) -> None:
    """IdP-initiated sign-in is off (the default). The stolen assertion answers no AuthnRequest (its
    signed confirmation has no InResponseTo); the envelope, which the IdP does not sign by default,
    is anyone's to write, and names the sign-in the attacker's own browser started."""
    _, acs, audience = start(Client(), "customer")
    stolen = CUSTOMER.sign_element(CUSTOMER.assertion_xml(audience=audience, recipient=acs, person=CAROL))
    attacker = Client()
    own_request_id, _, _ = start(attacker, "customer")

    response = post(attacker, "customer", envelope(CUSTOMER, stolen, acs=acs, in_response_to=own_request_id))

    assert response.status_code == 403
    assert signed_in_user(attacker) is None
    assert last_refusal().detail["reason"] == "unsolicited"


def test_the_sign_in_an_assertion_answers_is_the_one_its_signed_confirmation_names(world: World) -> None:
    """An envelope without InResponseTo around an assertion that answers this browser's sign-in is that
    sign-in's answer (its next page kept); the signed confirmation is what says so."""
    client = Client()
    request_id, acs, audience = start(client, "customer", next_url="/logbook/")
    assertion = CUSTOMER.assertion_xml(audience=audience, recipient=acs, person=CAROL, in_response_to=request_id)
    saml = unsolicited(envelope(CUSTOMER, CUSTOMER.sign_element(assertion), acs=acs, in_response_to=request_id))

    response = post(client, "customer", saml)

    assert response.status_code == 302 and response["Location"] == "/logbook/"
    assert signed_in_user(client) is not None


# --- a group names one account, never every account of a name ------------------------------------


@pytest.mark.parametrize(
    ("other_name", "group_key"),
    [("acme production", "Acme Production"), ("111111111111", "111111111111")],
)
def test_a_group_naming_one_account_grants_only_that_account(world: World, other_name: str, group_key: str) -> None:
    other = make_account("333333333333", other_name)  # another customer's account, named alike
    eve = Person(
        "eve@customer.test", "eve@customer.test", "Eve", "Eve", [f"passport:{group_key}:admin", "passport:x:approver"]
    )
    client = Client()
    sign_in(client, "customer", CUSTOMER, eve)
    user = signed_in_user(client)
    assert user is not None
    granted = {m.account.account_id for m in user.memberships.select_related("account")}
    assert other.account_id not in granted
    if group_key == "111111111111":  # an id names that account alone
        assert granted == {"111111111111"}


def test_a_name_several_accounts_share_grants_nothing_and_is_recorded(world: World) -> None:
    make_account("333333333333", "ACME PRODUCTION")
    eve = Person(
        "eve@customer.test",
        "eve@customer.test",
        "Eve",
        "Eve",
        ["passport:Acme Production:admin", "passport:acme production:approver", "passport:acme staging:observer"],
    )
    client = Client()
    sign_in(client, "customer", CUSTOMER, eve)
    user = signed_in_user(client)
    assert user is not None
    granted = {m.account.account_id: m.role for m in user.memberships.select_related("account")}
    assert granted == {"222222222222": "observer"}  # the name only one account has still counts
    entry = LogbookEntry.objects.get(action="auth.saml_group_ambiguous", actor=user)
    assert entry.detail["idp"] == "customer"
    [ambiguous] = entry.detail["ambiguous"]
    assert sorted(ambiguous["accounts"]) == ["111111111111", "333333333333"]
    assert sorted(ambiguous["groups"]) == ["passport:Acme Production:admin", "passport:acme production:approver"]


# --- a link belongs to the IdP that made it ------------------------------------------------------


def partner_sign_in(client: Client, person: Person) -> Any:
    location = urlsplit(client.get("/accounts/saml/partner/login/")["Location"])
    request = read_redirect_message(parse_qs(location.query)["SAMLRequest"][0])
    saml = PARTNER.response(
        acs_url=request.get("AssertionConsumerServiceURL"),
        audience=request.findtext(f"{{{SAML}}}Issuer"),
        person=person,
        in_response_to=request.get("ID"),
    )
    return post(client, "partner", saml)


def test_a_second_idp_of_the_store_cannot_sign_in_as_another_idps_person(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = [*settings.PASSPORT_SAML_IDPS, idp_entry("partner", PARTNER, "customer")]
    first = Client()
    sign_in(first, "customer", CUSTOMER, CAROL)
    carol = signed_in_user(first)
    assert carol is not None

    other = Client()  # another IdP of the same store, whose NameIDs happen to (or are made to) coincide
    response = partner_sign_in(other, Person(CAROL.name_id, "someone@partner.test", "Some", "One", []))

    assert response.status_code == 403
    assert b"another identity provider" in response.content
    assert signed_in_user(other) is None
    assert last_refusal().detail["reason"] == "linked_to_other_idp"
    entry = LogbookEntry.objects.get(action="auth.saml_link_refused")
    assert entry.detail == {
        "idp": "partner",
        "linked_idp": "customer",
        "identity_store": "customer",
        "name_id": CAROL.name_id,
        "user_id": carol.pk,
    }
    carol.refresh_from_db()
    assert carol.email == CAROL.email and Membership.objects.filter(user=carol, role="admin").exists()
    assert SamlIdentity.objects.get(user=carol).idp_slug == "customer"
    # Her own IdP still signs her in.
    again = Client()
    sign_in(again, "customer", CUSTOMER, CAROL)
    assert signed_in_user(again) == carol


def test_a_site_admin_moves_a_link_to_another_idp_of_its_store(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = [*settings.PASSPORT_SAML_IDPS, idp_entry("partner", PARTNER, "customer")]
    sign_in(Client(), "customer", CUSTOMER, CAROL)
    link = SamlIdentity.objects.get(name_id=CAROL.name_id)
    admin = Client()
    admin.force_login(make_user("root", is_superuser=True, is_staff=True))
    url = f"/admin/accounts/samlidentity/{link.pk}/change/"
    form = {"user": str(link.user_id), "identity_store": "customer", "name_id": CAROL.name_id}

    refused = admin.post(url, {**form, "idp_slug": "internal"})  # an IdP of the other store
    assert refused.status_code == 200 and b"identity provider of the customer store" in refused.content
    assert admin.post(url, {**form, "idp_slug": "partner"}).status_code == 302

    assert LogbookEntry.objects.filter(action="admin.changed").exists()
    moved = Client()
    partner_sign_in(moved, CAROL)
    assert signed_in_user(moved) == link.user
