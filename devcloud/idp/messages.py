"""The SAML vocabulary the demo IdP speaks: namespaces, ids, instants and the Redirect binding's encoding."""

from __future__ import annotations

import base64
import secrets
import zlib
from datetime import UTC, datetime

from lxml import etree

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NSMAP = {"samlp": SAMLP, "saml": SAML}
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
AWS_ROLE_ATTRIBUTE = "https://aws.amazon.com/SAML/Attributes/Role"


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return "_" + secrets.token_hex(20)


def deflate_b64(xml: bytes) -> str:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(compressor.compress(xml) + compressor.flush()).decode()


def inflate_b64(value: str) -> bytes:
    return zlib.decompress(base64.b64decode(value), -15)


def read_redirect_message(value: str) -> etree._Element:
    """A SAMLRequest/SAMLResponse query value (HTTP-Redirect binding) as XML."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.fromstring(inflate_b64(value), parser)
