"""Who a SAML assertion names: one person whatever form their NameID takes, never a person made of a
session's NameID, no way back for a deactivated person, and a username that is no one else's.

As in test_saml.py, nothing of Passport's is mocked: the test IdPs sign real XML.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import secrets
from typing import Any

import pytest
from django.apps import apps
from django.test import Client

from accounts.models import Membership, SamlIdentity, User
from accounts.saml.name_ids import name_id_key
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


def legacy(*links: SamlIdentity) -> SamlIdentity:
    """The links as migration 0015 finds them (no Format kept), keyed by its fill."""
    for link in links:
        SamlIdentity.objects.filter(pk=link.pk).update(name_id_format="", name_id_key="", name_id_lookalike="")
    importlib.import_module("accounts.migrations.0015_saml_name_id_key").fill_name_id_keys(apps, None)
    return links[-1]


# --- one person whatever form their NameID takes ----------------------------------------------


@pytest.mark.parametrize(
    ("name_id", "name_id_format"),
    [
        ("Carol@Customer.test", CAROL.name_id_format),  # as an IdP echoing the typed sign-in name sends it
        ("CAROL@CUSTOMER.TEST", EMAIL),
        ("carol@CUSTOMER.test", ""),  # no Format sent: unspecified
        ("carol@\uff23ustomer.test", EMAIL),  # a fullwidth C in the domain: IDNA maps it, as resolvers do
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
    """Migration 0015 keys a link it knows no Format of by its exact NameID; the person's IdP sending
    the same persistent NameID finds them, and the link keeps the Format from then on."""
    person = dataclasses.replace(CAROL, name_id="AbCdEf0123", name_id_format=PERSISTENT)
    _, carol = signed_in_as(person)
    assert carol is not None
    link = legacy(SamlIdentity.objects.get())

    _, again = signed_in_as(person)

    assert again == carol
    link.refresh_from_db()
    assert link.name_id_format == PERSISTENT
    assert link.name_id_key == name_id_key("AbCdEf0123", PERSISTENT)


def test_links_made_before_formats_were_kept_that_differ_in_case_stay_two_people(world: World) -> None:
    """Before 0015 the link was unique by exact NameID: "AbCdEf0123" and "abcdef0123" were two people,
    and stay two, neither parked; each signs in as themself, whichever comes first."""
    alice = dataclasses.replace(CAROL, name_id="AbCdEf0123", name_id_format=PERSISTENT)
    bob = dataclasses.replace(CAROL, name_id="abcdef0123", name_id_format=PERSISTENT, email="bob@customer.test")
    _, alice_user = signed_in_as(alice)
    _, bob_user = signed_in_as(bob)
    assert alice_user is not None and bob_user is not None and alice_user != bob_user
    legacy(*SamlIdentity.objects.all())
    assert not SamlIdentity.objects.filter(name_id_key__startswith="duplicate").exists()

    assert signed_in_as(bob)[1] == bob_user
    assert signed_in_as(alice)[1] == alice_user
    assert signed_in_as(bob)[1] == bob_user


@pytest.mark.parametrize(("name_id_format", "refused"), [(PERSISTENT, False), (CAROL.name_id_format, True)])
def test_a_link_made_before_formats_were_kept_is_not_found_by_a_name_id_differing_in_case(
    world: World, name_id_format: str, refused: bool
) -> None:
    """Alice's old link "AbCdEf0123" is found by that NameID only: another person's persistent
    "abcdef0123" is another person; an unspecified one reads as hers, so it is refused (and recorded)."""
    _, alice = signed_in_as(dataclasses.replace(CAROL, name_id="AbCdEf0123", name_id_format=PERSISTENT))
    legacy(SamlIdentity.objects.get())
    mallory = dataclasses.replace(CAROL, name_id="abcdef0123", name_id_format=name_id_format, email="m@customer.test")

    response, who = signed_in_as(mallory)

    assert alice is not None and who != alice
    assert (who is None) == refused
    if refused:
        assert response.status_code == 403
        entry = LogbookEntry.objects.get(action="auth.saml_person_refused")
        assert entry.detail["lookalike_user_id"] == alice.pk
    assert SamlIdentity.objects.get(user=alice).name_id_format == ""


def test_a_persistent_name_id_never_finds_an_email_like_link(world: World) -> None:
    """The key's kind is the Format's: an unspecified "AbCdEf0123" (folded) is not the persistent
    "abcdef0123", nor the persistent "AbCdEf0123", which are compared exactly among their own kind."""
    _, first = signed_in_as(dataclasses.replace(CAROL, name_id="AbCdEf0123"))
    _, lower = signed_in_as(
        dataclasses.replace(CAROL, name_id="abcdef0123", name_id_format=PERSISTENT, email="l@customer.test")
    )
    _, same_text = signed_in_as(
        dataclasses.replace(CAROL, name_id="AbCdEf0123", name_id_format=PERSISTENT, email="s@customer.test")
    )

    assert first is not None and lower is not None and same_text is not None
    assert len({first, lower, same_text}) == 3


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


@pytest.mark.parametrize(
    ("name_id", "email", "username", "given"),
    [
        ("\u5f20\u4f1f@customer.test", "", "", None),  # nothing ASCII: "user-" and a digest
        ("\u0438\u0432\u0430\u043d@customer.test", "", "", None),
        ("\u5f20\u4f1f@customer.test", "wei.zhang@customer.test", "", "wei.zhang"),  # the email's local part
        ("9f8e7d6c5b", "", "\u5f20\u4f1f", None),  # a persistent NameID, a username attribute of nothing ASCII
        ("jo@customer.test", "", "", "jo"),  # short, but kept whole
    ],
)
def test_a_name_with_little_ascii_in_it_gives_a_readable_username_of_the_person(
    world: World, name_id: str, email: str, username: str, given: str | None
) -> None:
    """Folding "\u5f20\u4f1f" or "\u0438\u0432\u0430\u043d" to ASCII leaves nothing: such people were
    "person", "person-customer", ... Now a name of theirs, else one of their store and NameID."""
    person = UsernamePerson(**dataclasses.asdict(dataclasses.replace(CAROL, name_id=name_id, email=email)))
    person.username = username

    response, user = signed_in_as(person)

    assert response.status_code == 302 and user is not None
    digest = hashlib.sha256(f"customer\n{name_id}".encode()).hexdigest()[:8]
    assert user.username == (given or f"user-{digest}")


def test_people_with_no_ascii_in_their_names_get_usernames_of_their_own(world: World) -> None:
    _, one = signed_in_as(dataclasses.replace(CAROL, name_id="\u5f20\u4f1f@customer.test", email=""))
    _, other = signed_in_as(dataclasses.replace(CAROL, name_id="\u0438\u0432\u0430\u043d@customer.test", email=""))

    assert one is not None and other is not None
    assert one.username != other.username
    assert {one.username, other.username}.isdisjoint({"person", "person-customer"})
    assert all(name.isascii() and name.startswith("user-") for name in (one.username, other.username))


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
