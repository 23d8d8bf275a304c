"""The admin's "Log out" (POST ``/admin/logout/``) is the portal's sign-out
(passport_portal.site_pages.admin_sign_out): ``auth.signed_out`` on record, and a person who came by
SAML sent on to their IdP's single logout, as the portal's own sign-out does. POST only, as the
admin's and the portal's: a GET signs nobody out."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from audit.models import LogbookEntry
from devcloud.idp import SAML, read_redirect_message
from tests.accounts.test_saml import CAROL, CUSTOMER, idp_entry, sign_in, signed_in_user
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_signing_out_from_the_admin_is_on_record(world: World) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(root)

    response = client.post("/admin/logout/")

    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert signed_in_user(client) is None
    entry = LogbookEntry.objects.get(action="auth.signed_out", actor=root)
    assert entry.detail == {"by": "person"}


def test_a_get_of_the_admins_sign_out_signs_nobody_out(world: World) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(root)

    assert client.get("/admin/logout/").status_code == 405
    assert signed_in_user(client) == root
    assert not LogbookEntry.objects.filter(action="auth.signed_out").exists()


def test_the_admins_sign_out_needs_the_pages_csrf_token(world: World) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(root)

    assert client.post("/admin/logout/").status_code == 403
    assert signed_in_user(client) == root


def test_a_saml_person_signing_out_from_the_admin_is_signed_out_at_their_idp_too(
    world: World, client: Client, settings: Any
) -> None:
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", CUSTOMER, "customer")]
    sign_in(client, "customer", CUSTOMER, CAROL)
    carol = signed_in_user(client)
    assert carol is not None

    response = client.post("/admin/logout/")

    assert signed_in_user(client) is None
    location = urlsplit(response["Location"])
    assert f"https://{location.netloc}{location.path}" == "https://idp.customer.test/slo"
    logout_request = read_redirect_message(parse_qs(location.query)["SAMLRequest"][0])
    assert logout_request.findtext(f"{{{SAML}}}NameID") == CAROL.name_id
    assert LogbookEntry.objects.filter(action="auth.signed_out", actor=carol).exists()
