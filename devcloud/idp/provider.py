"""One test identity provider: a fresh RSA key and certificate, signed Responses and logout messages."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from devcloud.idp.messages import NSMAP, SAML, SAMLP, STATUS_SUCCESS, UNSPECIFIED, deflate_b64, instant, new_id
from devcloud.idp.people import Person


class TestIdentityProvider:
    """One IdP: an entity id, a signing key and its certificate."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Passport test IdP")])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(self._key, hashes.SHA256())
        )
        self.key_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM).decode()

    # --- HTTP-POST: the sign-in Response ------------------------------------------------
    def assertion_xml(
        self,
        *,
        audience: str,
        recipient: str,
        person: Person,
        in_response_to: str | None = None,
        lifetime: timedelta = timedelta(minutes=5),
        now: datetime | None = None,
        session_index: str | None = None,
    ) -> etree._Element:
        now = now or datetime.now(UTC)
        until = instant(now + lifetime)
        assertion = etree.Element(f"{{{SAML}}}Assertion", nsmap={"saml": SAML})
        assertion.set("ID", new_id())
        assertion.set("Version", "2.0")
        assertion.set("IssueInstant", instant(now))
        etree.SubElement(assertion, f"{{{SAML}}}Issuer").text = self.entity_id
        subject = etree.SubElement(assertion, f"{{{SAML}}}Subject")
        name_id = etree.SubElement(subject, f"{{{SAML}}}NameID", Format=person.name_id_format)
        name_id.text = person.name_id
        confirmation = etree.SubElement(
            subject, f"{{{SAML}}}SubjectConfirmation", Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"
        )
        data = etree.SubElement(
            confirmation, f"{{{SAML}}}SubjectConfirmationData", NotOnOrAfter=until, Recipient=recipient
        )
        if in_response_to:
            data.set("InResponseTo", in_response_to)
        conditions = etree.SubElement(
            assertion, f"{{{SAML}}}Conditions", NotBefore=instant(now - timedelta(minutes=1)), NotOnOrAfter=until
        )
        restriction = etree.SubElement(conditions, f"{{{SAML}}}AudienceRestriction")
        etree.SubElement(restriction, f"{{{SAML}}}Audience").text = audience
        statement = etree.SubElement(
            assertion,
            f"{{{SAML}}}AuthnStatement",
            AuthnInstant=instant(now),
            SessionIndex=session_index or new_id(),
            SessionNotOnOrAfter=instant(now + timedelta(hours=8)),
        )
        context = etree.SubElement(statement, f"{{{SAML}}}AuthnContext")
        etree.SubElement(
            context, f"{{{SAML}}}AuthnContextClassRef"
        ).text = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
        attributes = etree.SubElement(assertion, f"{{{SAML}}}AttributeStatement")
        for name, values in person.attributes().items():
            attribute = etree.SubElement(attributes, f"{{{SAML}}}Attribute", Name=name)
            for value in values:
                etree.SubElement(attribute, f"{{{SAML}}}AttributeValue").text = value
        return assertion

    def sign_element(self, element: etree._Element) -> etree._Element:
        """An enveloped RSA-SHA256 signature over the element, placed after its Issuer."""
        signed = OneLogin_Saml2_Utils.add_sign(
            etree.tostring(element),
            self.key_pem,
            self.cert_pem,
            sign_algorithm=C.RSA_SHA256,
            digest_algorithm=C.SHA256,
        )
        return etree.fromstring(signed)

    def response_xml(
        self,
        *,
        acs_url: str,
        audience: str,
        person: Person,
        in_response_to: str | None = None,
        sign_assertion: bool = True,
        sign_response: bool = False,
        lifetime: timedelta = timedelta(minutes=5),
        now: datetime | None = None,
        session_index: str | None = None,
    ) -> bytes:
        now = now or datetime.now(UTC)
        assertion = self.assertion_xml(
            audience=audience,
            recipient=acs_url,
            person=person,
            in_response_to=in_response_to,
            lifetime=lifetime,
            now=now,
            session_index=session_index,
        )
        if sign_assertion:
            assertion = self.sign_element(assertion)
        response = etree.Element(f"{{{SAMLP}}}Response", nsmap=NSMAP)
        response.set("ID", new_id())
        response.set("Version", "2.0")
        response.set("IssueInstant", instant(now))
        response.set("Destination", acs_url)
        if in_response_to:
            response.set("InResponseTo", in_response_to)
        etree.SubElement(response, f"{{{SAML}}}Issuer").text = self.entity_id
        status = etree.SubElement(response, f"{{{SAMLP}}}Status")
        etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value=STATUS_SUCCESS)
        response.append(assertion)
        if sign_response:
            response = self.sign_element(response)
        return etree.tostring(response)

    def response(self, **kwargs: Any) -> str:
        """The base64 SAMLResponse form value."""
        return base64.b64encode(self.response_xml(**kwargs)).decode()

    # --- HTTP-Redirect: logout messages -------------------------------------------------
    def _signed_query(self, kind: str, xml: bytes, relay_state: str = "") -> str:
        parts = [f"{kind}={quote_plus(deflate_b64(xml))}"]
        if relay_state:
            parts.append(f"RelayState={quote_plus(relay_state)}")
        parts.append(f"SigAlg={quote_plus(C.RSA_SHA256)}")
        signed = "&".join(parts)
        signature = self._key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}&Signature={quote_plus(base64.b64encode(signature).decode())}"

    def logout_request_query(
        self,
        *,
        destination: str,
        name_id: str,
        relay_state: str = "",
        session_index: str | None = None,
        issued_at: datetime | None = None,
    ) -> str:
        request = etree.Element(f"{{{SAMLP}}}LogoutRequest", nsmap=NSMAP)
        request.set("ID", new_id())
        request.set("Version", "2.0")
        request.set("IssueInstant", instant(issued_at or datetime.now(UTC)))
        request.set("Destination", destination)
        etree.SubElement(request, f"{{{SAML}}}Issuer").text = self.entity_id
        etree.SubElement(request, f"{{{SAML}}}NameID", Format=UNSPECIFIED).text = name_id
        if session_index is not None:
            etree.SubElement(request, f"{{{SAMLP}}}SessionIndex").text = session_index
        return self._signed_query("SAMLRequest", etree.tostring(request), relay_state)

    def logout_response_query(self, *, destination: str, in_response_to: str, relay_state: str = "") -> str:
        response = etree.Element(f"{{{SAMLP}}}LogoutResponse", nsmap=NSMAP)
        response.set("ID", new_id())
        response.set("Version", "2.0")
        response.set("IssueInstant", instant(datetime.now(UTC)))
        response.set("Destination", destination)
        response.set("InResponseTo", in_response_to)
        etree.SubElement(response, f"{{{SAML}}}Issuer").text = self.entity_id
        status = etree.SubElement(response, f"{{{SAMLP}}}Status")
        etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value=STATUS_SUCCESS)
        return self._signed_query("SAMLResponse", etree.tostring(response), relay_state)
