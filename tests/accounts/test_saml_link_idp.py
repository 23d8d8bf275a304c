"""A SAML link belongs to the IdP that made it (its entity id, and an admin row's nonce), not to the
slug it had: another IdP given that slug later is refused, and an IdP renamed in the admin takes its
links along. Real endpoints, responses signed by the test IdPs' own keys."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.test import Client

from accounts.models import SamlIdentity, SamlIdentityProvider, User
from audit.models import LogbookEntry
from devcloud.idp import SAML, Person, TestIdentityProvider, read_redirect_message
from tests.accounts.test_saml import CAROL, CUSTOMER, idp_entry, post, sign_in, signed_in_user
from tests.conftest import World
from tests.factories import make_account, make_membership, make_user

# Another organisation's IdP: its own entity id and key.
STRANGER = TestIdentityProvider("https://idp.stranger.test/metadata")


def sign_in_at(client: Client, slug: str, idp: TestIdentityProvider, person: Person) -> Any:
    """A sign-in through ``slug``, answered by ``idp`` (whichever IdP the slug is configured as)."""
    response = client.get(f"/accounts/saml/{slug}/login/")
    assert response.status_code == 302
    request = read_redirect_message(parse_qs(urlsplit(response["Location"]).query)["SAMLRequest"][0])
    saml = idp.response(
        acs_url=request.get("AssertionConsumerServiceURL"),
        audience=request.findtext(f"{{{SAML}}}Issuer"),
        person=person,
        in_response_to=request.get("ID"),
    )
    return post(client, slug, saml)


def carol_signed_in(slug: str = "customer") -> User:
    client = Client()
    sign_in(client, slug, CUSTOMER, CAROL)
    carol = signed_in_user(client)
    assert carol is not None
    return carol


def assert_link_refused(response: Any, client: Client, carol: User) -> None:
    assert response.status_code == 403
    assert b"another identity provider" in response.content
    assert signed_in_user(client) is None
    entry = LogbookEntry.objects.filter(action="auth.saml_link_refused").get()
    assert entry.detail["user_id"] == carol.pk and entry.detail["idp"] == "customer"


def test_a_new_admin_idp_given_a_deleted_idps_slug_does_not_sign_in_its_people(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = []
    old = SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
    carol = carol_signed_in()
    make_membership(carol, make_account("333333333333", "Acme Finance"), "admin")  # an admin's own grant
    old.delete()
    SamlIdentityProvider.objects.create(**idp_entry("customer", STRANGER, "customer"))  # another IdP, same slug

    other = Client()
    assert_link_refused(sign_in_at(other, "customer", STRANGER, CAROL), other, carol)


def test_the_same_idp_added_again_as_a_new_row_is_another_idp_to_its_links(world: World, settings: Any) -> None:
    """README: a row added again is another IdP (its nonce), even with the same entity id and key."""
    settings.PASSPORT_SAML_IDPS = []
    old = SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
    carol = carol_signed_in()
    old.delete()
    SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))

    other = Client()
    assert_link_refused(sign_in_at(other, "customer", CUSTOMER, CAROL), other, carol)


def test_a_settings_idp_given_another_entity_id_under_the_same_slug_is_refused(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", CUSTOMER, "customer")]
    carol = carol_signed_in()
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", STRANGER, "customer")]

    other = Client()
    assert_link_refused(sign_in_at(other, "customer", STRANGER, CAROL), other, carol)
    # Put back as it was, it is the same IdP: she signs in again.
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", CUSTOMER, "customer")]
    again = Client()
    assert sign_in_at(again, "customer", CUSTOMER, CAROL).status_code == 302
    assert signed_in_user(again) == carol


def test_a_new_certificate_keeps_the_links(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = []
    row = SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
    carol = carol_signed_in()
    rotated = TestIdentityProvider(CUSTOMER.entity_id)
    row.x509cert = rotated.cert_pem
    row.save()
    again = Client()
    assert sign_in_at(again, "customer", rotated, CAROL).status_code == 302
    assert signed_in_user(again) == carol


def test_an_admin_moves_a_refused_link_to_the_new_idp(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = []
    old = SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
    carol = carol_signed_in()
    old.delete()
    SamlIdentityProvider.objects.create(**idp_entry("customer", STRANGER, "customer"))
    admin_client = Client()
    admin_client.force_login(make_user("root", is_superuser=True, is_staff=True))
    link = SamlIdentity.objects.get(user=carol)
    # Saved again in the admin, naming the slug: bound to the IdP that holds it now.
    response = admin_client.post(
        f"/admin/accounts/samlidentity/{link.pk}/change/",
        {"user": carol.pk, "identity_store": "customer", "name_id": link.name_id, "idp_slug": "customer"},
    )
    assert response.status_code == 302, response.content[:2000]
    other = Client()
    assert sign_in_at(other, "customer", STRANGER, CAROL).status_code == 302
    assert signed_in_user(other) == carol


def test_people_sign_in_again_through_a_renamed_idp_and_the_move_is_on_record(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = []
    row = SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
    client = Client()
    sign_in(client, "customer", CUSTOMER, CAROL)
    carol = signed_in_user(client)
    assert carol is not None
    mark = LogbookEntry.objects.order_by("-id").values_list("id", flat=True).first()

    row.slug = "customer-new"
    row.save()

    assert client.get("/requests/").status_code == 302  # a rename still ends its sessions
    assert SamlIdentity.objects.get(user=carol).idp_slug == "customer-new"
    [moved] = LogbookEntry.objects.filter(id__gt=mark, action="saml_identity.changed")
    assert moved.detail["changes"]["idp_slug"] == {"before": "customer", "after": "customer-new"}
    again = Client()
    assert sign_in_at(again, "customer-new", CUSTOMER, CAROL).status_code == 302
    assert signed_in_user(again) == carol
    # The old slug is free: an IdP given it is not theirs.
    SamlIdentityProvider.objects.create(**idp_entry("customer", STRANGER, "customer"))
    other = Client()
    assert_link_refused(sign_in_at(other, "customer", STRANGER, CAROL), other, carol)


def test_a_rename_leaves_the_links_of_another_idp_of_the_old_slug(world: World, settings: Any) -> None:
    """A settings entry wins over a row of its slug: its people are not the row's to take along."""
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", CUSTOMER, "customer")]
    row = SamlIdentityProvider.objects.create(**idp_entry("customer", STRANGER, "customer"))
    carol = carol_signed_in()
    row.slug = "stranger"
    row.save()
    assert SamlIdentity.objects.get(user=carol).idp_slug == "customer"
    again = Client()
    assert sign_in_at(again, "customer", CUSTOMER, CAROL).status_code == 302
    assert signed_in_user(again) == carol
