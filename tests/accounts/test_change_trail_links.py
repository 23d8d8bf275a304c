"""What links a person to their access, changed by a script, is on the record (accounts.change_trail,
accounts.change_trail_bulk): a membership moved to another person or account, a SAML NameID linked
to another person, groups and permissions written through their join tables, a CLI token handed
to another person or lengthened."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from accounts.models import ApiToken, Membership, SamlIdentity, User
from audit.models import LogbookEntry
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _last_entry() -> int:
    return LogbookEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _named(row: object) -> str:
    """A related row as the trail names it: its text and its id."""
    return f"{row} (#{row.pk})"  # type: ignore[attr-defined]


def _entries_since(mark: int, action: str) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(pk__gt=mark, action=action).order_by("pk"))


def test_a_membership_moved_to_another_person_by_a_save_is_on_record(world: World) -> None:
    membership = Membership.objects.get(user=world.requester, account=world.prod)
    mark = _last_entry()
    membership.user = world.outsider
    membership.save()

    [entry] = _entries_since(mark, "membership.changed")
    assert entry.detail["changes"]["user"] == {"before": _named(world.requester), "after": _named(world.outsider)}
    assert entry.account_id == world.prod.account_id


def test_a_membership_moved_to_another_account_by_a_save_is_on_record(world: World) -> None:
    membership = Membership.objects.get(user=world.member, account=world.prod)
    mark = _last_entry()
    membership.account = world.staging
    membership.save()

    [entry] = _entries_since(mark, "membership.changed")
    assert set(entry.detail["changes"]) == {"account"}


def test_memberships_moved_by_a_queryset_update_are_on_record_per_row(world: World) -> None:
    mark = _last_entry()
    assert Membership.objects.filter(user=world.requester).update(user=world.outsider) == 2

    entries = _entries_since(mark, "membership.changed")
    assert len(entries) == 2
    assert {entry.detail["bulk"] for entry in entries} == {"update"}
    assert all(set(entry.detail["changes"]) == {"user"} for entry in entries)


def test_a_saml_link_moved_to_another_person_is_on_record(world: World) -> None:
    mallory = make_user("mallory2", identity_store="customer")
    bob = make_user("bob2", identity_store="customer")
    mark = _last_entry()
    link = SamlIdentity.objects.create(user=mallory, identity_store="customer", name_id="m@x.test", idp_slug="cust")
    [made] = _entries_since(mark, "saml_identity.changed")
    assert made.detail["created"] is True
    assert made.detail["changes"]["user"] == {"before": None, "after": _named(mallory)}

    mark = _last_entry()
    link.user = bob  # the NameID mallory's IdP asserts now signs in as bob
    link.save()
    [moved] = _entries_since(mark, "saml_identity.changed")
    assert moved.detail["changes"] == {"user": {"before": _named(mallory), "after": _named(bob)}}

    mark = _last_entry()
    SamlIdentity.objects.filter(pk=link.pk).update(name_id="other@x.test")
    [renamed] = _entries_since(mark, "saml_identity.changed")
    assert renamed.detail["bulk"] == "update" and set(renamed.detail["changes"]) == {"name_id"}

    mark = _last_entry()
    link.delete()
    [gone] = _entries_since(mark, "saml_identity.changed")
    assert gone.detail["deleted"] is True


def test_a_group_given_through_its_join_table_is_on_record(world: World) -> None:
    group = Group.objects.create(name="superpowers")
    group.permissions.add(Permission.objects.get(codename="change_user"))
    through = User.groups.through
    mark = _last_entry()
    through.objects.create(user_id=world.outsider.pk, group_id=group.pk)

    [given] = _entries_since(mark, "person.changed")
    assert given.detail["changes"]["groups"]["after"] == [_named(group)]
    assert given.detail["object_id"] == str(world.outsider.pk)

    mark = _last_entry()
    through.objects.filter(user_id=world.outsider.pk).delete()
    [taken] = _entries_since(mark, "person.changed")
    assert taken.detail["changes"]["groups"] == {"before": [_named(group)], "after": []}


def test_a_permission_given_through_its_join_table_is_on_record(world: World) -> None:
    permission = Permission.objects.get(codename="change_user")
    mark = _last_entry()
    User.user_permissions.through.objects.create(user_id=world.outsider.pk, permission_id=permission.pk)

    [given] = _entries_since(mark, "person.changed")
    assert set(given.detail["changes"]) == {"user_permissions"}
    assert User.objects.get(pk=world.outsider.pk).has_perm("accounts.change_user")


def test_a_group_permission_given_through_its_join_table_is_on_record(world: World) -> None:
    group = Group.objects.create(name="editors")
    permission = Permission.objects.get(codename="change_user")
    mark = _last_entry()
    Group.permissions.through.objects.create(group_id=group.pk, permission_id=permission.pk)

    [given] = _entries_since(mark, "group.changed")
    assert set(given.detail["changes"]) == {"permissions"}


def test_a_bulk_create_on_a_join_table_is_on_record_whatever_its_conflict_options(world: World) -> None:
    group = Group.objects.create(name="superpowers")
    through = User.groups.through
    mark = _last_entry()
    rows = [
        through(user_id=world.outsider.pk, group_id=group.pk),
        through(user_id=world.observer.pk, group_id=group.pk),
    ]
    through.objects.bulk_create(rows, ignore_conflicts=True)

    entries = _entries_since(mark, "person.changed")
    assert [entry.detail["object"] for entry in entries] == sorted(
        ["mallory", "oscar"], key=lambda name: User.objects.get(username=name).pk
    )
    assert all(entry.detail["changes"]["groups"]["after"] == [_named(group)] for entry in entries)
    # The same rows again: nothing changed, nothing written.
    mark = _last_entry()
    through.objects.bulk_create([through(user_id=world.outsider.pk, group_id=group.pk)], ignore_conflicts=True)
    assert _entries_since(mark, "person.changed") == []


def test_a_join_row_moved_to_another_person_by_an_update_is_on_record_for_both(world: World) -> None:
    group = Group.objects.create(name="superpowers")
    world.outsider.groups.add(group)
    mark = _last_entry()
    User.groups.through.objects.filter(user_id=world.outsider.pk).update(user=world.observer)

    entries = _entries_since(mark, "person.changed")
    assert {entry.detail["object"]: entry.detail["changes"]["groups"]["after"] for entry in entries} == {
        "mallory": [],
        "oscar": [_named(group)],
    }


def test_a_cli_token_handed_to_another_person_or_lengthened_by_an_update_is_on_record(world: World) -> None:
    token = ApiToken.objects.create(
        user=world.outsider, name="laptop", token_hash="a" * 64, expires_at=timezone.now() + timedelta(hours=1)
    )
    mark = _last_entry()
    far = timezone.now() + timedelta(days=3650)
    ApiToken.objects.filter(pk=token.pk).update(user=world.requester, expires_at=far)

    [entry] = _entries_since(mark, "api_token.changed")
    assert set(entry.detail["changes"]) == {"user", "expires_at"}
    assert entry.detail["bulk"] == "update"


def test_a_cli_tokens_use_is_no_change(world: World) -> None:
    token = ApiToken.objects.create(
        user=world.outsider, name="laptop", token_hash="a" * 64, expires_at=timezone.now() + timedelta(hours=1)
    )
    mark = _last_entry()
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    token.last_used_at = timezone.now()
    token.save()
    assert _entries_since(mark, "api_token.changed") == []
