"""The email says which users are one person (``permissions.same_person``: four-eyes approval), so a change
of it by any path moves its key and is on record (``person.changed``), as a person's flags are."""

from __future__ import annotations

from typing import Any

import pytest

from accounts import permissions
from accounts.email_keys import email_key
from accounts.models import User
from audit.models import LogbookEntry
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _person_changes(person: User) -> list[dict[str, Any]]:
    entries = LogbookEntry.objects.filter(action="person.changed").order_by("id").values_list("detail", flat=True)
    return [detail for detail in entries if detail.get("object_id") == str(person.pk)]


def test_an_email_changed_by_a_script_is_on_record(world: World) -> None:
    local_bob = make_user("bob-local")
    other_bob = make_user("bob-saml")
    for person in (local_bob, other_bob):
        person.email = "bob@example.test"
        person.save()
    assert permissions.same_person(local_bob, other_bob)
    assert [set(detail["changes"]) for detail in _person_changes(local_bob)] == [{"email", "email_key"}]

    local_bob.email = "bob+break-glass@example.test"
    local_bob.save()  # a script, manage.py shell: no admin page, nobody signed in

    assert not permissions.same_person(local_bob, other_bob)  # bob may now approve bob's requests
    split = _person_changes(local_bob)[-1]
    assert split["changes"]["email"] == {"before": "bob@example.test", "after": "bob+break-glass@example.test"}
    assert "email_key" in split["changes"]
    entry = LogbookEntry.objects.filter(action="person.changed").order_by("-id").first()
    assert entry is not None and entry.actor is None


def test_an_email_set_by_update_moves_its_key_too(world: World) -> None:
    bob = make_user("bob")
    User.objects.filter(pk=bob.pk).update(email=world.requester.email)  # a script, a data migration
    bob.refresh_from_db()
    assert bob.email == world.requester.email and bob.email_key == email_key(world.requester.email)
    assert permissions.same_person(bob, world.requester)
    (merged,) = _person_changes(bob)
    assert merged["bulk"] == "update" and set(merged["changes"]) == {"email", "email_key"}


def test_a_bulk_update_of_emails_moves_each_key(world: World) -> None:
    people = [make_user("gina"), make_user("frank")]
    people[0].email, people[1].email = "GINA@Example.test", world.requester.email
    User.objects.bulk_update(people, ["email"])
    keys = dict(User.objects.filter(pk__in=[p.pk for p in people]).values_list("username", "email_key"))
    assert keys == {"gina": email_key("GINA@Example.test"), "frank": world.requester.email_key}


def test_an_update_of_the_key_alone_gets_the_key_of_the_rows_email(world: World) -> None:
    """The key is derived, never set: an update() naming it cannot make two people one (or one two)."""
    mallory = make_user("mal")
    User.objects.filter(pk=mallory.pk).update(email_key=world.requester.email_key)
    mallory.refresh_from_db()
    assert mallory.email_key == email_key(mallory.email)
    assert not permissions.same_person(mallory, world.requester)
