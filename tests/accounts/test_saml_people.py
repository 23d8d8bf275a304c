"""Who a SAML assertion names: one person whatever form their NameID takes, never a person made of a
session's NameID, no way back for a deactivated person, and a username that is no one else's.

As in test_saml.py, nothing of Passport's is mocked: the test IdPs sign real XML.
"""

from __future__ import annotations

import dataclasses
import importlib
import secrets
from typing import Any

import pytest
from django.apps import apps
from django.test import Client

from accounts.models import Membership, SamlIdentity, User
from audit.models import LogbookEntry
from devcloud.idp import Person
from tests.accounts.test_saml import (  # noqa: F401  (idps: the autouse fixture)
    CAROL,
    CUSTOMER,
    idps,
    last_refusal,
    sign_in,
    signed_in_user,
)
from tests.conftest import World
from tests.factories import make_user

TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def signed_in_as(person: Person) -> tuple[Any, User | None]:
    client = Client()
    response, _ = sign_in(client, "customer", CUSTOMER, person)
    return response, signed_in_user(client)


def deactivate(user: User) -> None:
    user.is_active = False
    user.save()


# --- one person whatever form their NameID takes ----------------------------------------------


@pytest.mark.parametrize(
    ("name_id", "name_id_format"),
    [
        ("Carol@Customer.test", CAROL.name_id_format),  # as an IdP echoing the typed sign-in name sends it
        ("CAROL@CUSTOMER.TEST", EMAIL),
        ("\uff43arol@customer.test", CAROL.name_id_format),  # a fullwidth c
    ],
)
def test_an_email_like_name_id_finds_its_person_in_any_case_or_form(
    world: World, name_id: str, name_id_format: str
) -> None:
    _, carol = signed_in_as(CAROL)
    assert carol is not None

    _, again = signed_in_as(dataclasses.replace(CAROL, name_id=name_id, name_id_format=name_id_format))

    assert again == carol
    assert SamlIdentity.objects.get().name_id == CAROL.name_id  # kept as first sent


def test_a_deactivated_person_does_not_come_back_under_a_name_id_differing_only_in_case(world: World) -> None:
    _, carol = signed_in_as(CAROL)
    assert carol is not None
    deactivate(carol)

    response, back = signed_in_as(dataclasses.replace(CAROL, name_id="Carol@Customer.test"))

    assert back is None and response.status_code == 403
    assert "This Passport account is disabled." in response.content.decode()
    assert last_refusal().detail["reason"] == "inactive"
    assert list(User.objects.filter(saml_identities__isnull=False)) == [carol]


def test_persistent_name_ids_are_compared_exactly(world: World) -> None:
    """A persistent NameID is opaque (SAML core 8.3.7): two differing in case are two people."""
    first = dataclasses.replace(CAROL, name_id="AbCdEf0123", name_id_format=PERSISTENT)
    second = dataclasses.replace(CAROL, name_id="abcdef0123", name_id_format=PERSISTENT, email="cara@customer.test")
    _, one = signed_in_as(first)
    _, other = signed_in_as(second)
    _, one_again = signed_in_as(first)

    assert one is not None and other is not None and one != other
    assert one_again == one


def test_a_link_made_before_formats_were_kept_is_found_by_its_persistent_name_id(world: World) -> None:
    """Migration 0015 keys a link it knows no Format of as unspecified (folded); the person's IdP sending
    the same persistent NameID finds them, and the link keeps the Format from then on."""
    person = dataclasses.replace(CAROL, name_id="AbCdEf0123", name_id_format=PERSISTENT)
    _, carol = signed_in_as(person)
    assert carol is not None
    link = SamlIdentity.objects.get()
    SamlIdentity.objects.filter(pk=link.pk).update(name_id_format="")
    migration = importlib.import_module("accounts.migrations.0015_saml_name_id_key")
    migration.fill_name_id_keys(apps, None)

    _, again = signed_in_as(person)

    assert again == carol
    link.refresh_from_db()
    assert link.name_id_format == PERSISTENT


def test_the_migration_keeps_the_oldest_of_links_that_fold_alike_and_parks_the_others(world: World) -> None:
    """Before 0015 "Carol@Customer.test" made a second person beside "carol@customer.test": the first
    made keeps signing in, the later one signs nobody in (a site admin sees it in the admin)."""
    _, carol = signed_in_as(CAROL)
    later = SamlIdentity.objects.create(
        user=make_user("carol-again"), identity_store="customer", name_id="x", idp_slug="customer"
    )
    SamlIdentity.objects.filter(pk=later.pk).update(name_id="Carol@Customer.test", name_id_key="stale")
    migration = importlib.import_module("accounts.migrations.0015_saml_name_id_key")

    migration.fill_name_id_keys(apps, None)

    later.refresh_from_db()
    assert later.name_id_key == f"duplicate-{later.pk}"
    _, again = signed_in_as(dataclasses.replace(CAROL, name_id="Carol@Customer.test"))
    assert again == carol


# --- a transient NameID names a session, never a person --------------------------------------------


def test_a_transient_name_id_is_refused_and_makes_nobody(world: World) -> None:
    """Linking on it would make a new person, with every group's membership, at each sign-in, and
    deactivating any of them would stop nothing."""
    for _ in range(2):
        person = dataclasses.replace(CAROL, name_id="_" + secrets.token_hex(16), name_id_format=TRANSIENT)
        response, user = signed_in_as(person)

        assert user is None and response.status_code == 403
        assert "one-time (transient) NameID" in response.content.decode()
        assert last_refusal().detail["reason"] == "transient_name_id"
    assert not SamlIdentity.objects.exists()
    assert not User.objects.filter(username__startswith="_").exists()


# --- a deactivated person is not made anew -------------------------------------------------------


def test_a_new_person_with_a_deactivated_persons_email_is_refused_and_recorded(world: World) -> None:
    _, carol = signed_in_as(CAROL)
    assert carol is not None
    deactivate(carol)
    # Her IdP names her anew: another NameID (a persistent one now), her email in another case.
    anew = dataclasses.replace(CAROL, name_id="9f8e7d6c5b", name_id_format=PERSISTENT, email="CAROL@customer.test")

    response, user = signed_in_as(anew)

    assert user is None and response.status_code == 403
    assert last_refusal().detail["reason"] == "inactive"
    entry = LogbookEntry.objects.get(action="auth.saml_person_refused")
    assert entry.detail == {
        "idp": "customer",
        "identity_store": "customer",
        "name_id": "9f8e7d6c5b",
        "reason": "a deactivated person has this email",
        "deactivated_user_id": carol.pk,
    }
    assert list(User.objects.filter(saml_identities__isnull=False)) == [carol]
    assert not Membership.objects.filter(user__saml_identities__isnull=False, user__is_active=True).exists()


def test_a_new_person_whose_email_like_name_id_is_a_deactivated_persons_is_refused(world: World) -> None:
    """No email attribute this time: the NameID is the address."""
    gone = make_user("carol-local")
    gone.email = "carol@customer.test"
    deactivate(gone)

    response, user = signed_in_as(dataclasses.replace(CAROL, email=""))

    assert user is None and response.status_code == 403
    assert LogbookEntry.objects.get(action="auth.saml_person_refused").detail["deactivated_user_id"] == gone.pk


# --- a username is no one else's ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "given"),
    [
        ("\uff53\uff41\uff4d", "sam-customer"),  # fullwidth: "sam" to NFKC, as Django folds a local username
        ("\u017fam", "sam-customer"),  # a long s
        ("SAM", "sam-customer"),
        ("S\u00e1m", "sam-customer"),  # accents dropped
        ("s\u0430m", "s-m"),  # a Cyrillic a has no ASCII form: replaced
    ],
)
def test_a_username_from_the_idp_is_plain_ascii_and_never_a_lookalike_of_anothers(
    world: World, wanted: str, given: str
) -> None:
    make_user("sam", first_name="Sam", last_name="Support")
    mallory = dataclasses.replace(CAROL, name_id="mallory@customer.test", email="mallory@customer.test")
    person = UsernamePerson(**dataclasses.asdict(mallory), username=wanted)

    response, user = signed_in_as(person)

    assert response.status_code == 302 and user is not None
    assert user.username == given


@dataclasses.dataclass
class UsernamePerson(Person):
    """A Person whose assertion also carries a username attribute."""

    username: str = ""

    def attributes(self) -> dict[str, list[str]]:
        return {**super().attributes(), "username": [self.username]}


def test_a_site_admin_cannot_give_a_link_another_persons_name_id_in_another_case(world: World) -> None:
    signed_in_as(CAROL)
    signed_in_as(dataclasses.replace(CAROL, name_id="cora@customer.test", email="cora@customer.test"))
    cora = SamlIdentity.objects.get(name_id="cora@customer.test")
    admin = Client()
    admin.force_login(make_user("root", is_superuser=True, is_staff=True))
    form = {"user": str(cora.user_id), "identity_store": "customer", "idp_slug": "customer"}

    response = admin.post(f"/admin/accounts/samlidentity/{cora.pk}/change/", {**form, "name_id": "CAROL@customer.test"})

    assert response.status_code == 200
    assert "Another person of this store is linked to this NameID" in response.content.decode()
    cora.refresh_from_db()
    assert cora.name_id == "cora@customer.test"
