"""SAML sign-in through the real endpoints, with responses signed by test IdP keys.

Nothing of Passport's is mocked: the test IdP (devcloud/idp/) builds and signs XML with
its own RSA key, and python3-saml checks it in the ACS view exactly as in production.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from lxml import etree

from accounts.models import Membership, SamlAssertionUse, User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from devcloud.idp import SAML, Person, TestIdentityProvider, read_redirect_message
from requests_app.services import access_request_create
from tests.conftest import World
from tests.factories import make_membership

CUSTOMER = TestIdentityProvider("https://idp.customer.test/metadata")
INTERNAL = TestIdentityProvider("https://idp.internal.test/metadata")

CAROL = Person(
    "carol@customer.test",
    "carol@customer.test",
    "Carol",
    "Customer",
    ["passport:111111111111:admin", "passport:acme staging:observer", "passport:111111111111:approver", "other"],
)
SAM = Person("sam@support.test", "sam@support.test", "Sam", "Support", ["passport:Acme Production:admin"])


def idp_entry(slug: str, idp: TestIdentityProvider, store: str) -> dict[str, Any]:
    host = urlsplit(idp.entity_id).netloc
    return {
        "slug": slug,
        "name": f"{store.title()} SSO",
        "identity_store": store,
        "entity_id": idp.entity_id,
        "sso_url": f"https://{host}/sso",
        "slo_url": f"https://{host}/slo",
        "x509cert": idp.cert_pem,
    }


@pytest.fixture(autouse=True)
def idps(settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = [
        idp_entry("customer", CUSTOMER, "customer"),
        idp_entry("internal", INTERNAL, "internal"),
    ]


@pytest.fixture
def client() -> Client:
    return Client()


def start(client: Client, slug: str, next_url: str = "") -> tuple[str, str, str]:
    """Begin a sign-in; returns the AuthnRequest's ID, ACS URL and our entity id (the audience)."""
    response = client.get(f"/accounts/saml/{slug}/login/" + (f"?next={next_url}" if next_url else ""))
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.netloc == urlsplit(CUSTOMER.entity_id if slug == "customer" else INTERNAL.entity_id).netloc
    request = read_redirect_message(parse_qs(location.query)["SAMLRequest"][0])
    return request.get("ID"), request.get("AssertionConsumerServiceURL"), request.findtext(f"{{{SAML}}}Issuer")


def post(client: Client, slug: str, saml_response: str) -> Any:
    """POST to the ACS as the IdP's form does, then follow to the finishing step."""
    response = client.post(f"/accounts/saml/{slug}/acs/", {"SAMLResponse": saml_response})
    if response.status_code != 302:
        return response
    assert response["Location"] == f"/accounts/saml/{slug}/acs/finish/"
    return client.get(response["Location"])


def sign_in(client: Client, slug: str, idp: TestIdentityProvider, person: Person, **kwargs: Any) -> tuple[Any, str]:
    request_id, acs, audience = start(client, slug)
    saml = idp.response(acs_url=acs, audience=audience, person=person, in_response_to=request_id, **kwargs)
    return post(client, slug, saml), saml


def signed_in_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def last_refusal() -> LogbookEntry:
    entry = LogbookEntry.objects.filter(action="auth.saml_refused").order_by("-id").first()
    assert entry is not None
    return entry


def test_a_valid_assertion_signs_the_person_in_with_mapped_attributes_and_memberships(
    world: World, client: Client
) -> None:
    response, _ = sign_in(client, "customer", CUSTOMER, CAROL)
    assert response.status_code == 302 and response["Location"] == "/requests/"
    user = signed_in_user(client)
    assert user is not None
    assert (user.email, user.first_name, user.last_name) == ("carol@customer.test", "Carol", "Customer")
    assert user.identity_store == User.IdentityStore.CUSTOMER
    assert not user.has_usable_password()
    roles = {
        m.account.account_id: (m.role, m.can_approve, m.source) for m in user.memberships.select_related("account")
    }
    assert roles == {"111111111111": ("admin", True, "saml"), "222222222222": ("observer", False, "saml")}
    signed_in = LogbookEntry.objects.get(action="auth.signed_in", actor=user)
    assert signed_in.detail == {"method": "saml", "idp": "customer", "identity_store": "customer"}


def test_the_next_url_survives_the_round_trip(world: World, client: Client) -> None:
    request_id, acs, audience = start(client, "customer", next_url="/logbook/")
    saml = CUSTOMER.response(acs_url=acs, audience=audience, person=CAROL, in_response_to=request_id)
    assert post(client, "customer", saml)["Location"] == "/logbook/"


def test_memberships_follow_the_groups_at_each_sign_in_but_local_grants_stay(world: World, client: Client) -> None:
    sign_in(client, "customer", CUSTOMER, CAROL)
    user = signed_in_user(client)
    assert user is not None
    client.logout()
    fewer = Person(CAROL.name_id, CAROL.email, "Carol", "Customer", ["passport:222222222222:admin", "passport:auditor"])
    sign_in(client, "customer", CUSTOMER, fewer)
    assert signed_in_user(client) == user
    user.refresh_from_db()
    assert user.is_auditor
    roles = {m.account.account_id: (m.role, m.can_approve) for m in user.memberships.select_related("account")}
    assert roles == {"222222222222": ("admin", False)}
    # An admin's grant on another account is not the IdP's to remove.
    extra = make_membership(user, world.prod, "observer")
    client.logout()
    sign_in(client, "customer", CUSTOMER, fewer)
    assert Membership.objects.filter(pk=extra.pk, source="local").exists()


def test_site_admin_is_honoured_only_from_the_internal_idp(world: World, client: Client) -> None:
    boss = Person("boss@x.test", "boss@x.test", "B", "Oss", ["passport:site-admin"])
    sign_in(client, "customer", CUSTOMER, boss)
    customer_boss = signed_in_user(client)
    assert customer_boss is not None and not customer_boss.is_superuser
    client.logout()
    sign_in(client, "internal", INTERNAL, boss)
    internal_boss = signed_in_user(client)
    assert internal_boss is not None and internal_boss.is_superuser and internal_boss.is_staff
    assert internal_boss != customer_boss


def test_an_unsigned_assertion_is_refused(world: World, client: Client) -> None:
    response, _ = sign_in(client, "customer", CUSTOMER, CAROL, sign_assertion=False)
    assert response.status_code == 403
    assert b"Sign-in refused" in response.content
    assert signed_in_user(client) is None
    assert last_refusal().detail["reason"] == "invalid_response"
    assert not User.objects.filter(email=CAROL.email).exists()


def test_a_signed_response_around_an_unsigned_assertion_is_refused(world: World, client: Client) -> None:
    response, _ = sign_in(client, "customer", CUSTOMER, CAROL, sign_assertion=False, sign_response=True)
    assert response.status_code == 403
    assert signed_in_user(client) is None
    assert "assertion" in " ".join(last_refusal().detail["errors"]).lower()


def test_a_tampered_assertion_is_refused(world: World, client: Client) -> None:
    request_id, acs, audience = start(client, "customer")
    xml = CUSTOMER.response_xml(acs_url=acs, audience=audience, person=CAROL, in_response_to=request_id)
    tampered = xml.replace(b"passport:111111111111:approver", b"passport:222222222222:approver")
    assert tampered != xml
    response = post(client, "customer", base64.b64encode(tampered).decode())
    assert response.status_code == 403
    assert signed_in_user(client) is None
    assert "signature" in " ".join(last_refusal().detail["errors"]).lower()


def test_a_replayed_assertion_is_refused_the_second_time(world: World, client: Client) -> None:
    response, saml = sign_in(client, "customer", CUSTOMER, CAROL)
    assert response.status_code == 302
    client.logout()
    again = post(client, "customer", saml)
    assert again.status_code == 403
    assert signed_in_user(client) is None
    assert last_refusal().detail["reason"] == "replayed"
    # Even from another browser that started its own sign-in.
    other = Client()
    start(other, "customer")
    assert post(other, "customer", saml).status_code == 403
    assert SamlAssertionUse.objects.count() == 1


def test_an_assertion_for_another_audience_is_refused(world: World, client: Client) -> None:
    request_id, acs, _ = start(client, "customer")
    saml = CUSTOMER.response(
        acs_url=acs, audience="https://other-sp.test/metadata", person=CAROL, in_response_to=request_id
    )
    response = post(client, "customer", saml)
    assert response.status_code == 403
    assert signed_in_user(client) is None
    assert "audience" in " ".join(last_refusal().detail["errors"]).lower()


def test_an_expired_assertion_is_refused(world: World, client: Client) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    response, _ = sign_in(client, "customer", CUSTOMER, CAROL, now=long_ago)
    assert response.status_code == 403
    assert signed_in_user(client) is None
    assert last_refusal().detail["reason"] == "invalid_response"


def test_a_response_signed_by_the_other_idps_key_is_refused(world: World, client: Client) -> None:
    request_id, acs, audience = start(client, "customer")
    forged = INTERNAL.response(acs_url=acs, audience=audience, person=CAROL, in_response_to=request_id)
    response = post(client, "customer", forged)
    assert response.status_code == 403
    assert signed_in_user(client) is None


def test_a_response_to_a_sign_in_this_browser_did_not_start_is_refused(world: World, client: Client) -> None:
    victim = Client()
    request_id, acs, audience = start(victim, "customer")
    saml = CUSTOMER.response(acs_url=acs, audience=audience, person=CAROL, in_response_to=request_id)
    response = post(client, "customer", saml)
    assert response.status_code == 403
    assert last_refusal().detail["reason"] == "unknown_request"
    unsolicited = CUSTOMER.response(acs_url=acs, audience=audience, person=CAROL)
    assert post(client, "customer", unsolicited).status_code == 403
    assert last_refusal().detail["reason"] == "unsolicited"


@pytest.mark.parametrize("body", ["not base64 at all!", base64.b64encode(b"<not-saml/>").decode(), ""])
def test_garbage_is_a_clear_400_not_a_500(world: World, client: Client, body: str) -> None:
    response = client.post("/accounts/saml/customer/acs/", {"SAMLResponse": body} if body else {})
    assert response.status_code in (400, 403)
    assert b"Sign-in refused" in response.content


def test_an_unknown_idp_is_a_404(world: World, client: Client) -> None:
    assert client.get("/accounts/saml/nobody/login/").status_code == 404


def test_one_stores_idp_cannot_reach_a_person_of_the_other_store(world: World, client: Client) -> None:
    """Account takeover: the internal IdP asserts the NameID and email of a customer person."""
    sign_in(client, "customer", CUSTOMER, CAROL)
    carol = signed_in_user(client)
    assert carol is not None
    client.logout()
    impostor = Person(CAROL.name_id, CAROL.email, "Carol", "Customer", ["passport:222222222222:admin"])
    sign_in(client, "internal", INTERNAL, impostor)
    someone = signed_in_user(client)
    assert someone is not None and someone != carol
    assert someone.identity_store == User.IdentityStore.INTERNAL
    # Carol's memberships are untouched by the other store's word.
    assert {m.account.account_id for m in carol.memberships.select_related("account")} == {
        "111111111111",
        "222222222222",
    }
    assert carol.memberships.get(account__account_id="222222222222").role == "observer"


def test_an_existing_local_person_is_not_linked_by_email(world: World, client: Client) -> None:
    local = Person("someone-else", world.requester.email, "Alice", "Admin", [])
    sign_in(client, "customer", CUSTOMER, local)
    user = signed_in_user(client)
    assert user is not None and user != world.requester


def test_sp_metadata_is_served_and_well_formed(world: World, client: Client) -> None:
    response = client.get("/accounts/saml/internal/metadata/")
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    assert root.get("entityID") == "http://testserver/accounts/saml/internal/metadata/"
    sp = root.find(f"{{{md}}}SPSSODescriptor")
    assert sp is not None and sp.get("WantAssertionsSigned") == "true"
    acs = sp.find(f"{{{md}}}AssertionConsumerService")
    assert acs is not None and acs.get("Location") == "http://testserver/accounts/saml/internal/acs/"
    sls = sp.find(f"{{{md}}}SingleLogoutService")
    assert sls is not None and sls.get("Location") == "http://testserver/accounts/saml/internal/sls/"


def test_sp_initiated_logout_sends_a_logout_request_and_accepts_the_answer(world: World, client: Client) -> None:
    sign_in(client, "customer", CUSTOMER, CAROL)
    carol = signed_in_user(client)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert signed_in_user(client) is None
    location = urlsplit(response["Location"])
    assert f"https://{location.netloc}{location.path}" == "https://idp.customer.test/slo"
    logout_request = read_redirect_message(parse_qs(location.query)["SAMLRequest"][0])
    assert logout_request.findtext(f"{{{SAML}}}NameID") == CAROL.name_id
    assert LogbookEntry.objects.filter(action="auth.signed_out", actor=carol).exists()
    sls = "http://testserver/accounts/saml/customer/sls/"
    answer = CUSTOMER.logout_response_query(destination=sls, in_response_to=logout_request.get("ID"))
    done = client.get(f"/accounts/saml/customer/sls/?{answer}")
    assert done.status_code == 302 and done["Location"] == "/accounts/login/"
    # The same answer twice, or one nobody asked for, is refused.
    assert client.get(f"/accounts/saml/customer/sls/?{answer}").status_code == 400


def test_idp_initiated_logout_signs_the_person_out(world: World, client: Client) -> None:
    sign_in(client, "customer", CUSTOMER, CAROL)
    carol = signed_in_user(client)
    sls = "http://testserver/accounts/saml/customer/sls/"
    query = CUSTOMER.logout_request_query(destination=sls, name_id=CAROL.name_id)
    response = client.get(f"/accounts/saml/customer/sls/?{query}")
    assert response.status_code == 302
    assert signed_in_user(client) is None
    location = urlsplit(response["Location"])
    assert f"https://{location.netloc}{location.path}" == "https://idp.customer.test/slo"
    assert "SAMLResponse" in parse_qs(location.query)
    entry = LogbookEntry.objects.get(action="auth.signed_out", actor=carol)
    assert entry.detail == {"by": "idp", "idp": "customer"}


def test_a_logout_request_not_signed_by_the_idp_is_refused(world: World, client: Client) -> None:
    sign_in(client, "customer", CUSTOMER, CAROL)
    sls = "http://testserver/accounts/saml/customer/sls/"
    forged = INTERNAL.logout_request_query(destination=sls, name_id=CAROL.name_id)
    assert client.get(f"/accounts/saml/customer/sls/?{forged}").status_code == 400
    unsigned = re.sub(r"&SigAlg=.*$", "", forged)
    assert client.get(f"/accounts/saml/customer/sls/?{unsigned}").status_code == 400
    assert signed_in_user(client) is not None


def test_a_support_engineer_must_name_a_ticket(world: World, client: Client) -> None:
    sign_in(client, "internal", INTERNAL, SAM)
    sam = signed_in_user(client)
    assert sam is not None and sam.identity_store == User.IdentityStore.INTERNAL
    with pytest.raises(RequestRuleError) as refused:
        access_request_create(requester=sam, account=world.prod, instances=[world.web], reason="Debug INC")
    assert "ticket" in refused.value.errors
    request = access_request_create(
        requester=sam, account=world.prod, instances=[world.web], reason="Debug INC", ticket="INC-7"
    )
    assert request.ticket == "INC-7"


def test_the_login_page_offers_both_idps_next_to_the_local_form(world: World, client: Client) -> None:
    page = client.get("/accounts/login/").content.decode()
    assert 'href="/accounts/saml/customer/login/"' in page
    assert 'href="/accounts/saml/internal/login/"' in page
    assert 'name="password"' in page


def wsgi_call(app: Any, method: str, url: str, body: str = "") -> tuple[str, dict[str, str], str]:
    from io import BytesIO
    from wsgiref.util import setup_testing_defaults

    parts = urlsplit(url)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": parts.path,
        "QUERY_STRING": parts.query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": BytesIO(body.encode()),
    }
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    content = b"".join(app(environ, start_response)).decode()
    return captured["status"], captured["headers"], content


def test_the_demo_idp_signs_sam_in_and_out(world: World, client: Client, settings: Any) -> None:
    """The demo's own IdP server (scripts/demo), driven as a browser would, against the real ACS."""
    from urllib.parse import urlencode

    from devcloud.idp import DemoServer

    server = DemoServer("http://idp.demo.test", "http://testserver", ["111111111111"])
    settings.PASSPORT_SAML_IDPS = server.passport_config()
    redirect = client.get("/accounts/saml/internal/login/")["Location"]
    status, _, picker = wsgi_call(server, "GET", redirect)
    assert status.startswith("200") and "Sign in as Sam Support" in picker
    fields = dict(re.findall(r'name="(SAMLRequest|RelayState)" value="([^"]*)"', picker))
    status, _, form = wsgi_call(server, "POST", urlsplit(redirect).path, urlencode({**fields, "person": "sam"}))
    assert 'action="http://testserver/accounts/saml/internal/acs/"' in form
    saml = re.search(r'name="SAMLResponse" value="([^"]+)"', form)
    assert saml is not None
    assert post(client, "internal", saml.group(1)).status_code == 302
    sam = signed_in_user(client)
    assert sam is not None and sam.identity_store == "internal"
    assert sam.memberships.get(account=world.prod).role == "admin"
    # IdP-initiated single logout from the demo IdP's page.
    status, headers, _ = wsgi_call(server, "GET", "http://idp.demo.test/internal/logout?person=sam")
    assert status.startswith("302")
    sls = urlsplit(headers["Location"])
    assert client.get(f"{sls.path}?{sls.query}").status_code == 302
    assert signed_in_user(client) is None


def test_with_sp_keys_our_requests_are_signed_and_the_metadata_says_so(
    world: World, client: Client, settings: Any
) -> None:
    """PASSPORT_SAML_SP_CERT/KEY: AuthnRequests go out signed (redirect binding) and verify with the cert."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    sp = TestIdentityProvider("http://testserver/sp-keys")  # any key pair and self-signed cert
    settings.PASSPORT_SAML_SP_CERT, settings.PASSPORT_SAML_SP_KEY = sp.cert_pem, sp.key_pem

    location = urlsplit(client.get("/accounts/saml/customer/login/")["Location"])
    raw = dict(part.split("=", 1) for part in location.query.split("&"))
    # The redirect binding signs "SAMLRequest=…&RelayState=…&SigAlg=…", values as sent.
    signed_part = "&".join(f"{name}={raw[name]}" for name in ("SAMLRequest", "RelayState", "SigAlg") if name in raw)
    params = parse_qs(location.query)
    assert params["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    public_key = x509.load_pem_x509_certificate(sp.cert_pem.encode()).public_key()
    raw_signature = base64.b64decode(params["Signature"][0])
    public_key.verify(raw_signature, signed_part.encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
    tampered = signed_part.replace("SAMLRequest=", "SAMLRequest=x").encode()
    with pytest.raises(InvalidSignature):  # and a changed request does not verify
        public_key.verify(raw_signature, tampered, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]

    root = etree.fromstring(client.get("/accounts/saml/customer/metadata/").content)
    md, ds = "urn:oasis:names:tc:SAML:2.0:metadata", "http://www.w3.org/2000/09/xmldsig#"
    descriptor = root.find(f"{{{md}}}SPSSODescriptor")
    assert descriptor is not None and descriptor.get("AuthnRequestsSigned") == "true"
    published = descriptor.findtext(f"{{{md}}}KeyDescriptor/{{{ds}}}KeyInfo/{{{ds}}}X509Data/{{{ds}}}X509Certificate")
    assert published is not None and "".join(published.split()) in "".join(sp.cert_pem.split())


def test_a_person_who_came_by_saml_gets_no_local_password_by_mail_or_by_the_set_page(
    world: World, client: Client, mailoutbox: list[Any]
) -> None:
    # A local password would let them in after their IdP took their groups or account away.
    sign_in(client, "customer", CUSTOMER, CAROL)
    carol = signed_in_user(client)
    assert carol is not None and not carol.has_usable_password()

    set_page = client.post(
        "/accounts/password/set/", {"password1": "a-New-passw0rd-xyz", "password2": "a-New-passw0rd-xyz"}
    )
    client.post("/accounts/logout/")
    reset = Client().post("/accounts/password/reset/", {"email": "carol@customer.test"})
    local_reset = Client().post("/accounts/password/reset/", {"email": world.requester.email})

    assert set_page.status_code == 302 and set_page["Location"] == "/requests/"
    carol.refresh_from_db()
    assert not carol.has_usable_password()
    # The page answers alike, so nobody learns who came by SAML; only the local person is mailed.
    assert reset.status_code == local_reset.status_code == 302
    assert [message.to for message in mailoutbox] == [[world.requester.email]]


@pytest.mark.parametrize(
    "email", ["dan@customer.test\nBcc: spy@evil.test", "dan@customer.test, spy@evil.test", "dan@\u202eevil.test"]
)
def test_an_email_attribute_that_is_not_one_address_is_not_kept_and_names_lose_hidden_characters(
    world: World, client: Client, email: str
) -> None:
    # The address goes into mail headers; the names into pages, mails and the CLI.
    person = dataclasses.replace(
        CAROL, name_id="dan@customer.test", email=email, first_name="Dan\u202e", last_name="\u2066Hid\u200fden\u2069"
    )
    response, _ = sign_in(client, "customer", CUSTOMER, person)

    user = signed_in_user(client)
    assert response.status_code == 302 and user is not None
    assert (user.email, user.first_name, user.last_name) == ("", "Dan", "Hidden")


def test_a_name_from_the_identity_provider_is_one_line(world: World, client: Client) -> None:
    # A newline in a name would start a line of its own in a mail to approvers, a fake link included.
    person = dataclasses.replace(
        CAROL,
        name_id="dan@customer.test",
        email="dan@customer.test",
        first_name="Dan\nInstances: i-0aaaaaaaaaaaaaaaa\r\n\thttps://evil.example/approve",
        last_name="  Cus\ttomer \n",
    )
    response, _ = sign_in(client, "customer", CUSTOMER, person)

    user = signed_in_user(client)
    assert response.status_code == 302 and user is not None
    assert (user.first_name, user.last_name) == (
        "Dan Instances: i-0aaaaaaaaaaaaaaaa https://evil.example/approve",
        "Cus tomer",
    )


def test_a_refusal_page_shows_none_of_an_unsigned_responses_own_words(world: World, client: Client) -> None:
    # python3-saml's reason quotes the response's StatusMessage before any signature is checked,
    # and anyone's page can post to the ACS: the page says only Passport's words.
    lure = "Your account is locked. Call the IT desk on +1 555 0100 and give them your password"
    xml = (
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x1" Version="2.0" '
        'IssueInstant="2030-01-01T00:00:00Z"><samlp:Status>'
        '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"/>'
        f"<samlp:StatusMessage>{lure} \u202emoc.live</samlp:StatusMessage></samlp:Status></samlp:Response>"
    )
    response = client.post("/accounts/saml/customer/acs/", {"SAMLResponse": base64.b64encode(xml.encode()).decode()})
    page = response.content.decode()
    assert response.status_code == 403
    assert "The SAML response was refused" in page
    assert lure not in page and "\u202e" not in page
    # The Logbook keeps what python3-saml said, for whoever looks into it.
    assert any(lure in error for error in last_refusal().detail["errors"])
