"""A small SAML 2.0 identity provider for the demo and the tests. Never for production.

`TestIdentityProvider` makes a fresh RSA key and self-signed certificate and builds what a
real IdP sends: Responses with a signed Assertion (HTTP-POST binding) and signed
LogoutRequests / LogoutResponses (HTTP-Redirect binding). Tests use it as a library.

``python -m devcloud.idp serve`` runs two of them on one port, ``/customer/`` and
``/internal/``, each with a page to pick a demo person, and writes the list Passport reads
from ``PASSPORT_SAML_IDPS_FILE``. Keys live only in the process's memory.

The package by concern: ``messages`` (the SAML vocabulary and the Redirect binding's
encoding), ``people`` (who the demo IdPs sign in), ``provider`` (one IdP: its key and the
messages it signs), ``server`` (the demo WSGI app) and ``cli`` (``serve``).
"""

from devcloud.idp.cli import main
from devcloud.idp.messages import (
    AWS_ROLE_ATTRIBUTE,
    NSMAP,
    SAML,
    SAMLP,
    STATUS_SUCCESS,
    UNSPECIFIED,
    deflate_b64,
    inflate_b64,
    read_redirect_message,
)
from devcloud.idp.people import Person, demo_people
from devcloud.idp.provider import TestIdentityProvider
from devcloud.idp.server import DemoIdp, DemoServer

__all__ = [
    "AWS_ROLE_ATTRIBUTE",
    "NSMAP",
    "SAML",
    "SAMLP",
    "STATUS_SUCCESS",
    "UNSPECIFIED",
    "DemoIdp",
    "DemoServer",
    "Person",
    "TestIdentityProvider",
    "deflate_b64",
    "demo_people",
    "inflate_b64",
    "main",
    "read_redirect_message",
]
