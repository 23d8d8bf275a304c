"""A small SAML 2.0 identity provider for the demo and the tests. Never for production.

`TestIdentityProvider` makes a fresh RSA key and self-signed certificate and builds what a
real IdP sends: Responses with a signed Assertion (HTTP-POST binding) and signed
LogoutRequests / LogoutResponses (HTTP-Redirect binding). Tests use it as a library.

``python -m devcloud.idp serve`` runs two of them on one port, ``/customer/`` and
``/internal/``, each with a page to pick a demo person, and writes the list Passport reads
from ``PASSPORT_SAML_IDPS_FILE``. Keys live only in the process's memory.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import json
import secrets
import sys
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus
from wsgiref.simple_server import WSGIRequestHandler, make_server

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.utils import OneLogin_Saml2_Utils

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NSMAP = {"samlp": SAMLP, "saml": SAML}
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
AWS_ROLE_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/Role"


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id() -> str:
    return "_" + secrets.token_hex(20)


def deflate_b64(xml: bytes) -> str:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(compressor.compress(xml) + compressor.flush()).decode()


def inflate_b64(value: str) -> bytes:
    return zlib.decompress(base64.b64decode(value), -15)


@dataclass
class Person:
    name_id: str
    email: str
    first_name: str
    last_name: str
    groups: list[str] = field(default_factory=list)
    # AWS SAML federation's Role attribute: "role ARN,provider ARN", one value per account.
    aws_roles: list[str] = field(default_factory=list)

    def attributes(self) -> dict[str, list[str]]:
        attributes = {
            "email": [self.email],
            "givenName": [self.first_name],
            "sn": [self.last_name],
            "groups": list(self.groups),
        }
        if self.aws_roles:
            attributes[AWS_ROLE_ATTRIBUTE] = list(self.aws_roles)
        return attributes


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
        until = _instant(now + lifetime)
        assertion = etree.Element(f"{{{SAML}}}Assertion", nsmap={"saml": SAML})
        assertion.set("ID", _new_id())
        assertion.set("Version", "2.0")
        assertion.set("IssueInstant", _instant(now))
        etree.SubElement(assertion, f"{{{SAML}}}Issuer").text = self.entity_id
        subject = etree.SubElement(assertion, f"{{{SAML}}}Subject")
        name_id = etree.SubElement(subject, f"{{{SAML}}}NameID", Format=UNSPECIFIED)
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
            assertion, f"{{{SAML}}}Conditions", NotBefore=_instant(now - timedelta(minutes=1)), NotOnOrAfter=until
        )
        restriction = etree.SubElement(conditions, f"{{{SAML}}}AudienceRestriction")
        etree.SubElement(restriction, f"{{{SAML}}}Audience").text = audience
        statement = etree.SubElement(
            assertion,
            f"{{{SAML}}}AuthnStatement",
            AuthnInstant=_instant(now),
            SessionIndex=session_index or _new_id(),
            SessionNotOnOrAfter=_instant(now + timedelta(hours=8)),
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
    ) -> bytes:
        now = now or datetime.now(UTC)
        assertion = self.assertion_xml(
            audience=audience,
            recipient=acs_url,
            person=person,
            in_response_to=in_response_to,
            lifetime=lifetime,
            now=now,
        )
        if sign_assertion:
            assertion = self.sign_element(assertion)
        response = etree.Element(f"{{{SAMLP}}}Response", nsmap=NSMAP)
        response.set("ID", _new_id())
        response.set("Version", "2.0")
        response.set("IssueInstant", _instant(now))
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

    def logout_request_query(self, *, destination: str, name_id: str, relay_state: str = "") -> str:
        request = etree.Element(f"{{{SAMLP}}}LogoutRequest", nsmap=NSMAP)
        request.set("ID", _new_id())
        request.set("Version", "2.0")
        request.set("IssueInstant", _instant(datetime.now(UTC)))
        request.set("Destination", destination)
        etree.SubElement(request, f"{{{SAML}}}Issuer").text = self.entity_id
        etree.SubElement(request, f"{{{SAML}}}NameID", Format=UNSPECIFIED).text = name_id
        return self._signed_query("SAMLRequest", etree.tostring(request), relay_state)

    def logout_response_query(self, *, destination: str, in_response_to: str, relay_state: str = "") -> str:
        response = etree.Element(f"{{{SAMLP}}}LogoutResponse", nsmap=NSMAP)
        response.set("ID", _new_id())
        response.set("Version", "2.0")
        response.set("IssueInstant", _instant(datetime.now(UTC)))
        response.set("Destination", destination)
        response.set("InResponseTo", in_response_to)
        etree.SubElement(response, f"{{{SAML}}}Issuer").text = self.entity_id
        status = etree.SubElement(response, f"{{{SAMLP}}}Status")
        etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value=STATUS_SUCCESS)
        return self._signed_query("SAMLResponse", etree.tostring(response), relay_state)


def read_redirect_message(value: str) -> etree._Element:
    """A SAMLRequest/SAMLResponse query value (HTTP-Redirect binding) as XML."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.fromstring(inflate_b64(value), parser)


# --- The demo server ----------------------------------------------------------------------


def demo_people(store: str, account_ids: list[str], roles: dict[str, str] | None = None) -> dict[str, Person]:
    """The demo people of one store; ``roles`` (account id -> "role ARN,provider ARN") is what
    devcloud seeded for this store's people, sent as the AWS Role attribute so Passport can
    ask IAM about them."""
    known = roles or {}
    aws_roles = [known[a] for a in account_ids if a in known]
    if store == "customer":
        return {
            "carol": Person(
                "carol@customer.example",
                "carol@customer.example",
                "Carol",
                "Customer",
                [f"passport:{a}:admin" for a in account_ids] + [f"passport:{a}:approver" for a in account_ids],
                aws_roles,
            ),
            "cora": Person(
                "cora@customer.example",
                "cora@customer.example",
                "Cora",
                "Observer",
                [f"passport:{a}:observer" for a in account_ids],
            ),
        }
    return {
        "sam": Person(
            "sam@support.passport.test",
            "sam@support.passport.test",
            "Sam",
            "Support",
            [f"passport:{a}:admin" for a in account_ids],
            aws_roles,
        ),
    }


@dataclass
class DemoIdp:
    slug: str
    name: str
    store: str
    idp: TestIdentityProvider
    people: dict[str, Person]


class DemoServer:
    """A WSGI app serving /<slug>/sso, /<slug>/slo, /<slug>/metadata and /<slug>/ per IdP."""

    def __init__(
        self,
        base_url: str,
        sp_base: str,
        account_ids: list[str],
        federated_roles: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.sp_base = sp_base.rstrip("/")
        self.idps: dict[str, DemoIdp] = {}
        for slug, name, store in (
            ("customer", "Customer SSO (demo)", "customer"),
            ("internal", "Support SSO (demo)", "internal"),
        ):
            entity_id = f"{self.base_url}/{slug}/metadata"
            self.idps[slug] = DemoIdp(
                slug,
                name,
                store,
                TestIdentityProvider(entity_id),
                demo_people(store, account_ids, (federated_roles or {}).get(store)),
            )

    def passport_config(self) -> list[dict[str, Any]]:
        return [
            {
                "slug": d.slug,
                "name": d.name,
                "identity_store": d.store,
                "entity_id": d.idp.entity_id,
                "sso_url": f"{self.base_url}/{d.slug}/sso",
                "slo_url": f"{self.base_url}/{d.slug}/slo",
                "x509cert": d.idp.cert_pem,
            }
            for d in self.idps.values()
        ]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        parts = [p for p in path.split("/") if p]
        demo = self.idps.get(parts[0]) if parts else None
        if demo is None:
            return self._page(
                start_response,
                "Passport demo IdPs",
                "".join(
                    f'<p><a href="/{d.slug}/">{html.escape(d.name)}</a> ({d.store})</p>' for d in self.idps.values()
                ),
            )
        action = parts[1] if len(parts) > 1 else ""
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if environ["REQUEST_METHOD"] == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            query.update({k: v[0] for k, v in parse_qs(environ["wsgi.input"].read(length).decode()).items()})
        try:
            if action == "sso":
                return self._sso(demo, query, environ["REQUEST_METHOD"], start_response)
            if action == "slo":
                return self._slo(demo, query, start_response)
            if action == "metadata":
                return self._metadata(demo, start_response)
            if action == "logout":
                return self._idp_logout(demo, query, start_response)
        except (ValueError, KeyError, etree.XMLSyntaxError, zlib.error) as exc:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [f"Bad SAML message: {type(exc).__name__}".encode()]
        people = "".join(
            f"<li>{html.escape(p.first_name)} {html.escape(p.last_name)} "
            f'<a href="/{demo.slug}/logout?person={key}">sign out of Passport (IdP-initiated)</a></li>'
            for key, p in demo.people.items()
        )
        return self._page(start_response, demo.name, f"<ul>{people}</ul>")

    def _page(self, start_response: Any, title: str, body: str, status: str = "200 OK") -> list[bytes]:
        start_response(status, [("Content-Type", "text/html; charset=utf-8")])
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            "<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
            f"<h1>{html.escape(title)}</h1>{body}</body></html>"
        )
        return [page.encode()]

    def _sso(self, demo: DemoIdp, query: dict[str, str], method: str, start_response: Any) -> list[bytes]:
        request = read_redirect_message(query["SAMLRequest"])
        acs_url = request.get("AssertionConsumerServiceURL", "")
        if not acs_url.startswith(self.sp_base + "/"):
            return self._page(
                start_response, "Refused", "<p>That service provider is not known here.</p>", "400 Bad Request"
            )
        audience = request.findtext(f"{{{SAML}}}Issuer") or ""
        hidden = (
            f'<input type="hidden" name="SAMLRequest" value="{html.escape(query["SAMLRequest"])}">'
            f'<input type="hidden" name="RelayState" value="{html.escape(query.get("RelayState", ""))}">'
        )
        if method != "POST" or query.get("person") not in demo.people:
            buttons = "".join(
                f'<p><button name="person" value="{key}">'
                f"Sign in as {html.escape(p.first_name)} {html.escape(p.last_name)}</button> "
                f"<small>{html.escape(', '.join(p.groups))}</small></p>"
                for key, p in demo.people.items()
            )
            return self._page(
                start_response,
                demo.name,
                f"<p>Pick a demo person ({demo.store} identity store).</p><form method='post'>{hidden}{buttons}</form>",
            )
        person = demo.people[query["person"]]
        response = demo.idp.response(
            acs_url=acs_url, audience=audience, person=person, in_response_to=request.get("ID")
        )
        form = (
            f'<form method="post" action="{html.escape(acs_url)}">'
            f'<input type="hidden" name="SAMLResponse" value="{response}">'
            f'<input type="hidden" name="RelayState" value="{html.escape(query.get("RelayState", ""))}">'
            f"<button>Continue to Passport</button></form><script>document.forms[0].submit()</script>"
        )
        return self._page(start_response, f"Signing {person.first_name} in", form)

    def _slo(self, demo: DemoIdp, query: dict[str, str], start_response: Any) -> list[bytes]:
        if "SAMLRequest" in query:
            request = read_redirect_message(query["SAMLRequest"])
            destination = f"{self.sp_base}/accounts/saml/{demo.slug}/sls/"
            location = (
                destination
                + "?"
                + demo.idp.logout_response_query(
                    destination=destination,
                    in_response_to=request.get("ID", ""),
                    relay_state=query.get("RelayState", ""),
                )
            )
            start_response("302 Found", [("Location", location)])
            return [b""]
        return self._page(
            start_response, "Signed out", f'<p>Signed out. <a href="{self.sp_base}/">Back to Passport</a></p>'
        )

    def _idp_logout(self, demo: DemoIdp, query: dict[str, str], start_response: Any) -> list[bytes]:
        person = demo.people[query["person"]]
        destination = f"{self.sp_base}/accounts/saml/{demo.slug}/sls/"
        location = destination + "?" + demo.idp.logout_request_query(destination=destination, name_id=person.name_id)
        start_response("302 Found", [("Location", location)])
        return [b""]

    def _metadata(self, demo: DemoIdp, start_response: Any) -> list[bytes]:
        cert = "".join(demo.idp.cert_pem.strip().splitlines()[1:-1])
        xml = (
            f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{demo.idp.entity_id}">'
            '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            '<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data>'
            f"<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            f'<md:SingleLogoutService Binding="{C.BINDING_HTTP_REDIRECT}" Location="{self.base_url}/{demo.slug}/slo"/>'
            f'<md:SingleSignOnService Binding="{C.BINDING_HTTP_REDIRECT}" Location="{self.base_url}/{demo.slug}/sso"/>'
            "</md:IDPSSODescriptor></md:EntityDescriptor>"
        )
        start_response("200 OK", [("Content-Type", "application/samlmetadata+xml")])
        return [xml.encode()]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("idp: " + (format % args) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcloud.idp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the two demo IdPs until interrupted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4570)
    serve.add_argument("--sp-base", default="http://127.0.0.1:8000", help="Passport's base URL")
    serve.add_argument(
        "--manifest", type=Path, help="devcloud's manifest: its accounts get the demo groups and federated roles"
    )
    serve.add_argument("--out", type=Path, required=True, help="where to write Passport's PASSPORT_SAML_IDPS list")
    args = parser.parse_args(argv)
    account_ids: list[str] = []
    federated_roles: dict[str, dict[str, str]] = {}
    if args.manifest:
        manifest = json.loads(args.manifest.read_text())
        account_ids = [item["id"] for item in manifest["accounts"]]
        federated_roles = manifest.get("federated_roles") or {}
    app = DemoServer(f"http://{args.host}:{args.port}", args.sp_base, account_ids, federated_roles)
    with make_server(args.host, args.port, app, handler_class=_QuietHandler) as server:
        args.out.write_text(json.dumps(app.passport_config(), indent=2))
        print(f"demo IdPs on http://{args.host}:{args.port}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
