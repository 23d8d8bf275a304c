"""The demo server: two IdPs on one port, each with a page to pick a demo person."""

from __future__ import annotations

import html
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C

from devcloud.idp.messages import SAML, read_redirect_message
from devcloud.idp.people import Person, demo_people
from devcloud.idp.provider import TestIdentityProvider


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
