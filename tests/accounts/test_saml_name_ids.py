"""Which NameIDs name one person (accounts.saml.name_ids): an email-like one is one mailbox, folded
no further than its ASCII case and its domain's IDNA form; one that only reads alike is refused, never
signed in; kinds of key never meet; a NameID or Format longer than Passport keeps is refused.

As in test_saml.py, nothing of Passport's is mocked: the test IdPs sign real XML.
"""

from __future__ import annotations

import dataclasses

import pytest
from django.db import connection
from django.test import Client

from accounts.models import SamlIdentity, User
from accounts.saml.name_ids import EMAIL_ADDRESS, UNSPECIFIED, name_id_key
from audit.models import LogbookEntry
from tests.accounts.test_saml import CAROL, CUSTOMER, idps, last_refusal, sign_in  # noqa: F401  (idps: autouse)
from tests.accounts.test_saml_people import PERSISTENT, signed_in_as
from tests.conftest import World
from tests.factories import make_user

# --- the keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Carol@Customer.TEST", "carol@customer.test"),
        ("carol@B\u00fccher.test", "carol@xn--bcher-kva.test"),  # the domain's IDNA form
        ("carol@\uff43ustomer.test", "carol@customer.test"),  # a fullwidth letter in the domain: IDNA maps it
    ],
)
def test_email_like_name_ids_of_one_mailbox_share_a_key(one: str, other: str) -> None:
    assert name_id_key(one, EMAIL_ADDRESS) == name_id_key(other, UNSPECIFIED)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("stra\u00dfe@customer.test", "strasse@customer.test"),  # full case folding: ß is not ss
        ("\uff43arol@customer.test", "carol@customer.test"),  # fullwidth in the local part
        ("\u212aate@customer.test", "kate@customer.test"),  # the Kelvin sign lower-cases to k: not ASCII
        ("ca\u00adrol@customer.test", "carol@customer.test"),  # a soft hyphen
        ('"carol"@customer.test', "carol@customer.test"),  # a quoted local part
        ("carol@stra\u00dfe.test", "carol@strasse.test"),  # IDNA 2008 keeps ß in a domain
    ],
)
def test_name_ids_that_only_read_alike_do_not_share_a_key(one: str, other: str) -> None:
    assert name_id_key(one, EMAIL_ADDRESS) != name_id_key(other, EMAIL_ADDRESS)


def test_the_kinds_of_key_never_meet() -> None:
    keys = {name_id_key("abcdef0123", fmt) for fmt in ("", UNSPECIFIED, PERSISTENT)}
    assert len(keys) == 3
    assert name_id_key("AbCdEf0123", PERSISTENT) != name_id_key("abcdef0123", PERSISTENT)
    assert name_id_key("AbCdEf0123", "") != name_id_key("abcdef0123", "")
    assert name_id_key("", UNSPECIFIED) == ""


# --- one mailbox, one person; reading alike is refused ---------------------------------------------


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ("strasse@customer.test", "stra\u00dfe@customer.test"),
        ("stra\u00dfe@customer.test", "strasse@customer.test"),
        ("carol@customer.test", "\uff43arol@customer.test"),
        ("carol@customer.test", '"carol"@customer.test'),
    ],
)
def test_an_email_like_name_id_reading_as_another_persons_is_refused_and_recorded(
    world: World, first: str, then: str
) -> None:
    _, one = signed_in_as(dataclasses.replace(CAROL, name_id=first, name_id_format=EMAIL_ADDRESS, email=""))
    assert one is not None

    response, who = signed_in_as(dataclasses.replace(CAROL, name_id=then, name_id_format=EMAIL_ADDRESS, email=""))

    assert who is None and response.status_code == 403
    assert "reads like another person" in response.content.decode()
    assert last_refusal().detail["reason"] == "name_id_reads_alike"
    entry = LogbookEntry.objects.get(action="auth.saml_person_refused")
    assert entry.detail == {
        "idp": "customer",
        "identity_store": "customer",
        "name_id": then,
        "reason": "another person of this store is linked to a NameID that reads alike",
        "lookalike_user_id": one.pk,
    }
    assert list(User.objects.filter(saml_identities__isnull=False)) == [one]
    # The person it reads as still signs in.
    assert signed_in_as(dataclasses.replace(CAROL, name_id=first, name_id_format=EMAIL_ADDRESS))[1] == one


def test_a_persistent_name_id_reading_as_another_is_another_person(world: World) -> None:
    """Opaque values are not read: "\uff41bc" and "abc" persistent are two people, not a refusal."""
    _, one = signed_in_as(dataclasses.replace(CAROL, name_id="abc", name_id_format=PERSISTENT))
    _, other = signed_in_as(
        dataclasses.replace(CAROL, name_id="\uff41bc", name_id_format=PERSISTENT, email="o@customer.test")
    )

    assert one is not None and other is not None and one != other


def test_a_site_admin_cannot_give_an_email_like_link_a_name_id_reading_as_anothers(world: World) -> None:
    signed_in_as(CAROL)
    signed_in_as(dataclasses.replace(CAROL, name_id="cora@customer.test", email="cora@customer.test"))
    cora = SamlIdentity.objects.get(name_id="cora@customer.test")
    admin = Client()
    admin.force_login(make_user("root", is_superuser=True, is_staff=True))
    form = {"user": str(cora.user_id), "identity_store": "customer", "idp_slug": "customer"}

    response = admin.post(
        f"/admin/accounts/samlidentity/{cora.pk}/change/", {**form, "name_id": "\uff43arol@customer.test"}
    )

    assert response.status_code == 200
    assert "Another person of this store is linked to this NameID (or one reading alike)" in response.content.decode()
    cora.refresh_from_db()
    assert cora.name_id == "cora@customer.test"
    # Her own NameID unchanged, the link's other fields can be saved.
    assert (
        admin.post(f"/admin/accounts/samlidentity/{cora.pk}/change/", {**form, "name_id": cora.name_id}).status_code
        == 302
    )


@pytest.mark.parametrize("name_id", ["CAROL@customer.test", "carol@customer.test"])
def test_a_link_a_site_admin_adds_does_not_take_another_persons_sign_ins(world: World, name_id: str) -> None:
    """A link added in the admin keeps no Format: found first, by its exact NameID, it would take
    the sign-ins of carol's email-like link."""
    _, carol = signed_in_as(CAROL)
    admin = Client()
    admin.force_login(make_user("root", is_superuser=True, is_staff=True))
    other = make_user("carol-2")
    form = {"user": str(other.pk), "identity_store": "customer", "idp_slug": "customer", "name_id": name_id}

    response = admin.post("/admin/accounts/samlidentity/add/", form)

    assert response.status_code == 200
    assert "Another person of this store is linked to this NameID" in response.content.decode()
    assert list(SamlIdentity.objects.values_list("user", flat=True)) == [carol.pk]


# --- what Passport cannot keep is refused, not cut and not a 500 --------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"name_id_format": "urn:example:nameid-format:" + "x" * 300},
        {"name_id": "x" * 490 + "@customer.test"},
    ],
)
def test_a_name_id_or_format_longer_than_passport_keeps_is_refused_and_recorded(
    world: World, changes: dict[str, str]
) -> None:
    client = Client()
    client.raise_request_exception = False

    response, _ = sign_in(client, "customer", CUSTOMER, dataclasses.replace(CAROL, **changes))

    assert response.status_code == 400
    assert "longer than Passport keeps" in response.content.decode()
    assert last_refusal().detail["reason"] == "malformed"
    assert not SamlIdentity.objects.exists()


# --- a link added by code older than these columns, while a deploy rolls --------------------------------


def test_a_link_added_without_the_new_columns_is_kept_and_found_by_its_exact_name_id(world: World) -> None:
    """Code older than migration 0015 inserts no Format and no keys: the database's defaults let it,
    and the link is a legacy one, found by its exact NameID, that takes its Format at the next sign-in."""
    carol = make_user("carol-old")
    with connection.cursor() as cursor:
        for name_id in ("Carol@customer.test", "other@customer.test"):
            cursor.execute(
                "INSERT INTO accounts_samlidentity (user_id, identity_store, name_id, idp_slug, created_at)"
                " VALUES (%s, 'customer', %s, 'customer', now())",
                [carol.pk, name_id],
            )

    _, who = signed_in_as(dataclasses.replace(CAROL, name_id="Carol@customer.test"))

    assert who == carol
    link = SamlIdentity.objects.get(name_id="Carol@customer.test")
    assert (link.name_id_format, link.name_id_key) == (UNSPECIFIED, name_id_key("carol@customer.test", UNSPECIFIED))
