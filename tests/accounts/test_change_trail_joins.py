"""Django's groups and permissions changed outside the admin (accounts.change_trail_joins): one call
of a related manager is one entry for each person (or group) whose groups or permissions it changed,
with before and after, whichever side it was made from; a group or permission deleted is a change
for each person and group that held it; all of it in the write's transaction.

Plain django_db: the Logbook's triggers refuse the DELETE a transactional test's flush would run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models.signals import pre_delete
from django.test import Client

from accounts.models import User
from audit.models import LogbookEntry
from tests.conftest import World

pytestmark = pytest.mark.django_db

# A group's name is free text: control characters, a newline, bidi overrides, quotes and shell
# metacharacters are recorded as they are (the review page shows them escaped).
HOSTILE = "ops\n\r\x1b[31m\u202e'\"`;$(id)|&>x\u2028"


def _mark() -> int:
    return LogbookEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _since(mark: int) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(pk__gt=mark).order_by("pk"))


def _named(*rows: object) -> list[str]:
    """Related rows as the trail names them, in its order."""
    return sorted(f"{row} (#{row.pk})" for row in rows)  # type: ignore[attr-defined]


def _changed(mark: int, action: str = "person.changed") -> dict[str, dict[str, object]]:
    """Each entry of ``action`` since ``mark`` by the object it names (one each, or the test fails)."""
    entries = [entry for entry in _since(mark) if entry.action == action]
    by_object = {entry.detail["object"]: entry.detail["changes"] for entry in entries}
    assert len(by_object) == len(entries), [entry.detail for entry in entries]
    return by_object


@dataclass
class Staff:
    ops: Group
    dev: Group
    mallory: User  # in ops
    oscar: User  # in ops and dev
    carol: User  # in none
    ops_pk: int = field(init=False)  # kept: Django clears a deleted row's id on its instance

    @property
    def ops_named(self) -> str:
        return f"{HOSTILE} (#{self.ops_pk})"

    def __post_init__(self) -> None:
        self.ops_pk = self.ops.pk


@pytest.fixture
def staff(world: World) -> Staff:
    ops = Group.objects.create(name=HOSTILE)
    dev = Group.objects.create(name="dev")
    world.outsider.groups.add(ops)
    world.observer.groups.add(ops, dev)
    return Staff(ops=ops, dev=dev, mallory=world.outsider, oscar=world.observer, carol=world.approver)


def _groups(before: list[str], after: list[str]) -> dict[str, dict[str, object]]:
    return {"groups": {"before": before, "after": after}}


CALLS: dict[str, tuple[Callable[[Staff], object], Callable[[Staff], dict[str, dict[str, object]]]]] = {
    # A person's side.
    "person set": (
        lambda s: s.mallory.groups.set([s.dev]),
        lambda s: {"mallory": _groups(_named(s.ops), _named(s.dev))},
    ),
    "person set with clear": (
        lambda s: s.mallory.groups.set([s.ops, s.dev], clear=True),
        lambda s: {"mallory": _groups(_named(s.ops), _named(s.ops, s.dev))},
    ),
    "person set to the same": (lambda s: s.oscar.groups.set([s.dev, s.ops], clear=True), lambda s: {}),
    "person add": (
        lambda s: s.mallory.groups.add(s.dev),
        lambda s: {"mallory": _groups(_named(s.ops), _named(s.ops, s.dev))},
    ),
    "person remove": (
        lambda s: s.oscar.groups.remove(s.ops, s.dev),
        lambda s: {"oscar": _groups(_named(s.ops, s.dev), [])},
    ),
    "person clear": (lambda s: s.oscar.groups.clear(), lambda s: {"oscar": _groups(_named(s.ops, s.dev), [])}),
    # A group's side.
    "group set": (
        lambda s: s.ops.user_set.set([s.oscar, s.carol]),
        lambda s: {"mallory": _groups(_named(s.ops), []), "carol": _groups([], _named(s.ops))},
    ),
    "group set with clear": (
        lambda s: s.ops.user_set.set([s.oscar, s.carol], clear=True),
        lambda s: {"mallory": _groups(_named(s.ops), []), "carol": _groups([], _named(s.ops))},
    ),
    "group add": (
        lambda s: s.dev.user_set.add(s.mallory, s.carol, s.oscar),
        lambda s: {"mallory": _groups(_named(s.ops), _named(s.ops, s.dev)), "carol": _groups([], _named(s.dev))},
    ),
    "group remove": (
        lambda s: s.ops.user_set.remove(s.mallory, s.oscar),
        lambda s: {"mallory": _groups(_named(s.ops), []), "oscar": _groups(_named(s.ops, s.dev), _named(s.dev))},
    ),
    "group clear": (
        lambda s: s.ops.user_set.clear(),
        lambda s: {"mallory": _groups(_named(s.ops), []), "oscar": _groups(_named(s.ops, s.dev), _named(s.dev))},
    ),
}


@pytest.mark.parametrize("call", CALLS, ids=list(CALLS))
def test_one_call_is_one_entry_per_person_whose_groups_it_changed(staff: Staff, call: str) -> None:
    write, expected = CALLS[call]
    mark = _mark()
    write(staff)
    assert _changed(mark) == expected(staff)
    assert all(entry.action == "person.changed" for entry in _since(mark))


def test_a_set_records_the_groups_before_and_after_as_stored(staff: Staff) -> None:
    mark = _mark()
    staff.mallory.groups.set([staff.dev])
    [entry] = _since(mark)
    assert entry.detail["model"] == "accounts.user"
    assert entry.detail["object_id"] == str(staff.mallory.pk)
    # The hostile name is kept whole: data in the entry's JSON, never cut or interpreted.
    assert entry.detail["changes"] == _groups([staff.ops_named], [f"dev (#{staff.dev.pk})"])
    assert list(User.objects.get(pk=staff.mallory.pk).groups.all()) == [staff.dev]


def test_a_persons_own_permissions_set_is_one_entry(staff: Staff) -> None:
    change_user = Permission.objects.get(codename="change_user")
    view_user = Permission.objects.get(codename="view_user")
    staff.mallory.user_permissions.add(change_user)
    mark = _mark()
    staff.mallory.user_permissions.set([view_user])
    assert _changed(mark) == {
        "mallory": {"user_permissions": {"before": _named(change_user), "after": _named(view_user)}}
    }

    mark = _mark()
    view_user.user_set.set([staff.carol], clear=True)
    assert _changed(mark) == {
        "mallory": {"user_permissions": {"before": _named(view_user), "after": []}},
        "carol": {"user_permissions": {"before": [], "after": _named(view_user)}},
    }


def test_a_groups_permissions_set_is_one_entry_from_either_side(staff: Staff) -> None:
    change_user = Permission.objects.get(codename="change_user")
    view_user = Permission.objects.get(codename="view_user")
    staff.dev.permissions.add(change_user)
    mark = _mark()
    staff.dev.permissions.set([view_user, change_user], clear=True)
    assert _changed(mark, "group.changed") == {
        "dev": {"permissions": {"before": _named(change_user), "after": _named(change_user, view_user)}}
    }

    mark = _mark()
    view_user.group_set.set([staff.ops], clear=True)
    assert _changed(mark, "group.changed") == {
        "dev": {"permissions": {"before": _named(change_user, view_user), "after": _named(change_user)}},
        HOSTILE: {"permissions": {"before": [], "after": _named(view_user)}},
    }


# Deletions: what the group (or permission) gave goes with it.


def test_a_deleted_groups_members_each_get_one_entry_naming_it_removed(staff: Staff) -> None:
    mark = _mark()
    staff.ops.delete()
    assert _changed(mark) == {
        "mallory": _groups([staff.ops_named], []),
        "oscar": _groups(sorted([f"dev (#{staff.dev.pk})", staff.ops_named]), _named(staff.dev)),
    }
    [gone] = [entry for entry in _since(mark) if entry.action == "group.changed"]
    assert gone.detail["deleted"] is True and gone.detail["changes"] == {"name": {"before": HOSTILE, "after": None}}
    assert list(User.objects.get(pk=staff.oscar.pk).groups.all()) == [staff.dev]


def test_a_groups_hostile_name_is_shown_escaped_on_the_review_page(world: World, staff: Staff) -> None:
    staff.ops.delete()
    client = Client()
    client.force_login(world.auditor)
    content = client.get("/logbook/", {"action": "person.changed"}).content.decode()
    for raw in ("\x1b", "\u202e", "\u2028", "\r"):
        assert raw not in content
    # The whole detail: the name's hidden characters as escapes, its quotes and <>& as HTML's.
    assert "ops\\n\\r\\u001b[31m\\u202e&#x27;\\&quot;`;$(id)|&amp;&gt;x\\u2028" in content


def test_groups_deleted_together_are_one_entry_per_member(staff: Staff) -> None:
    ops_pk, dev_pk = staff.ops.pk, staff.dev.pk
    mark = _mark()
    Group.objects.filter(pk__in=[ops_pk, dev_pk]).delete()
    assert _changed(mark) == {
        "mallory": _groups([f"{HOSTILE} (#{ops_pk})"], []),
        "oscar": _groups(sorted([f"{HOSTILE} (#{ops_pk})", f"dev (#{dev_pk})"]), []),
    }
    assert len([entry for entry in _since(mark) if entry.action == "group.changed"]) == 2


def test_a_group_without_members_deleted_is_its_own_entry_alone(world: World) -> None:
    group = Group.objects.create(name="empty")
    mark = _mark()
    group.delete()
    assert [entry.action for entry in _since(mark)] == ["group.changed"]


def test_a_deleted_permission_is_a_change_for_each_person_and_group_that_held_it(staff: Staff) -> None:
    change_user = Permission.objects.get(codename="change_user")
    named = _named(change_user)
    staff.carol.user_permissions.add(change_user)
    staff.dev.permissions.add(change_user)
    mark = _mark()
    change_user.delete()
    assert _changed(mark) == {"carol": {"user_permissions": {"before": named, "after": []}}}
    assert _changed(mark, "group.changed") == {"dev": {"permissions": {"before": named, "after": []}}}


# In the write's transaction: a rollback leaves neither the change nor its entries.


def test_a_rolled_back_set_writes_no_entry(staff: Staff) -> None:
    mark = _mark()
    with pytest.raises(RuntimeError), transaction.atomic():
        staff.mallory.groups.set([staff.dev])
        staff.ops.user_set.set([staff.carol], clear=True)
        assert len(_changed(mark)) == 3  # written now, in this transaction
        raise RuntimeError
    assert _since(mark) == []
    assert list(User.objects.get(pk=staff.mallory.pk).groups.all()) == [staff.ops]


def test_a_group_deletion_and_its_members_entries_are_one_transaction(staff: Staff) -> None:
    mark = _mark()
    with pytest.raises(RuntimeError), transaction.atomic():
        staff.ops.delete()
        assert set(_changed(mark)) == {"mallory", "oscar"}  # written now, in the deletion's transaction
        raise RuntimeError
    assert _since(mark) == []
    assert Group.objects.filter(pk=staff.ops_pk).exists()
    assert list(User.objects.get(pk=staff.mallory.pk).groups.values_list("pk", flat=True)) == [staff.ops_pk]


def test_a_group_deletion_that_failed_and_is_tried_again_is_recorded_once(staff: Staff) -> None:
    def refuse(**kwargs: object) -> None:
        raise RuntimeError("refused after the trail's own pre_delete")

    pre_delete.connect(refuse, sender=Group, dispatch_uid="test_refuse_group_deletion")
    mark = _mark()
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            staff.ops.delete()
    finally:
        pre_delete.disconnect(dispatch_uid="test_refuse_group_deletion", sender=Group)
    assert _since(mark) == [] and staff.ops.pk == staff.ops_pk

    staff.ops.delete()  # the same instance, again
    assert _changed(mark) == {
        "mallory": _groups([staff.ops_named], []),
        "oscar": _groups(sorted([f"dev (#{staff.dev.pk})", staff.ops_named]), _named(staff.dev)),
    }
