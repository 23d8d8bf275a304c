"""The README's SSO story end to end: carol (Customer SSO) and sam (Support SSO, with a ticket)
sign in through the demo IdP, which sends the AWS Role attribute devcloud seeded for them;
IAM's SimulatePrincipalPolicy in devcloud allows the role, and each request goes Active."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client

from accounts.models import AwsAccount, Membership
from devcloud.idp import DemoServer
from requests_app import services
from requests_app.models import AccessRequest, Instance, RequestStatus
from tests.accounts.test_saml import post, signed_in_user, wsgi_call
from tests.factories import make_membership, make_user
from tests.stack import Cloud, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def _demo_sign_in(client: Client, server: DemoServer, slug: str, person: str) -> None:
    """Through the demo IdP's own pages, as a browser would, then the real ACS."""
    redirect = client.get(f"/accounts/saml/{slug}/login/")["Location"]
    _, _, picker = wsgi_call(server, "GET", redirect)
    fields = dict(re.findall(r'name="(SAMLRequest|RelayState)" value="([^"]*)"', picker))
    _, _, form = wsgi_call(server, "POST", urlsplit(redirect).path, urlencode({**fields, "person": person}))
    saml = re.search(r'name="SAMLResponse" value="([^"]+)"', form)
    assert saml is not None
    assert post(client, slug, saml.group(1)).status_code == 302


def test_carol_and_sam_ask_through_sso_and_get_access(prod: AwsAccount, aws: Cloud, settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = True
    server = DemoServer("http://idp.demo.test", "http://testserver", [prod.account_id], aws.manifest["federated_roles"])
    settings.PASSPORT_SAML_IDPS = server.passport_config()
    bob = make_user("bob")
    make_membership(bob, prod, "admin", can_approve=True)
    web = Instance.objects.get(account=prod, name="web-1")

    for slug, person, ticket in (("customer", "carol", ""), ("internal", "sam", "INC-4211")):
        client = Client()
        _demo_sign_in(client, server, slug, person)
        user = signed_in_user(client)
        assert user is not None
        role_arn = aws.manifest["federated_roles"][slug][prod.account_id].split(",")[0]
        assert Membership.objects.get(user=user, account=prod).principal_arn == role_arn
        page = client.get("/requests/new/").content.decode()
        assert "no IAM principal" not in page and 'id="request-form"' in page
        response = client.post(
            "/requests/new/",
            {
                "account": prod.pk,
                "instances": [web.pk],
                "duration": 60,
                "reason": f"{person} checks the web tier",
                "ticket": ticket,
            },
        )
        assert response.status_code == 302, response.content.decode()
        access_request = AccessRequest.objects.get(requester=user)
        services.access_request_approve(access_request=access_request, approver=bob)
        wait_for(
            lambda pk=access_request.pk: AccessRequest.objects.get(pk=pk).status == RequestStatus.ACTIVE,
            what=f"{person}'s request active",
        )
