"""People in the admin: users, groups, email addresses, second factors. Every change is in the Logbook,
with the fields before and after; passwords and TOTP secrets are named, never shown."""

from __future__ import annotations

import json

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import Group, Permission

from accounts.models import User
from audit.models import LogbookEntry
from tests.audit.admin_forms import admin_entries, form_data, only_entry, post_ok, superuser_client
from tests.conftest import World

pytestmark = pytest.mark.django_db

USERS = "/admin/accounts/user/"


@pytest.fixture(autouse=True)
def whole_seconds(world: World) -> None:
    # The admin's date-time inputs carry whole seconds, so saving a form really does drop the
    # microseconds a freshly made user has (and the Logbook would rightly say so).
    for user in User.objects.all():
        User.objects.filter(pk=user.pk).update(date_joined=user.date_joined.replace(microsecond=0))


def test_making_a_person_superuser_and_auditor_is_on_the_record(world: World) -> None:
    """The finding: this change through /admin/ left no Logbook entry."""
    client, root = superuser_client()
    alice = world.requester
    url = f"{USERS}{alice.pk}/change/"

    post_ok(client, url, form_data(client, url, is_superuser="on", is_staff="on", is_auditor="on"))

    alice.refresh_from_db()
    assert alice.is_superuser and alice.is_auditor
    entry = only_entry("admin.changed", "accounts.user")
    assert entry.actor == root
    assert entry.detail["object_id"] == str(alice.pk) and entry.detail["object"] == "alice"
    assert entry.detail["changes"] == {
        "is_auditor": {"before": False, "after": True},
        "is_staff": {"before": False, "after": True},
        "is_superuser": {"before": False, "after": True},
    }


def test_saving_a_form_with_nothing_changed_writes_nothing(world: World) -> None:
    client, _ = superuser_client()
    url = f"{USERS}{world.requester.pk}/change/"
    post_ok(client, url, form_data(client, url))
    assert admin_entries() == []


def test_groups_and_permissions_of_a_person_are_recorded(world: World) -> None:
    client, _ = superuser_client()
    approvers = Group.objects.create(name="approvers")
    permission = Permission.objects.get(codename="change_awsaccount")
    url = f"{USERS}{world.requester.pk}/change/"

    post_ok(client, url, form_data(client, url, groups=[str(approvers.pk)], user_permissions=[str(permission.pk)]))

    changes = only_entry("admin.changed", "accounts.user").detail["changes"]
    assert changes["groups"] == {"before": [], "after": [f"approvers (#{approvers.pk})"]}
    assert changes["user_permissions"]["before"] == []
    assert changes["user_permissions"]["after"] == [f"{permission} (#{permission.pk})"]


def test_adding_a_person_records_the_password_as_set_and_never_its_hash() -> None:
    client, _ = superuser_client()
    url = f"{USERS}add/"
    password = "Correct-Horse-Battery-9"

    post_ok(client, url, form_data(client, url, username="newbie", password1=password, password2=password))

    newbie = User.objects.get(username="newbie")
    entry = only_entry("admin.added", "accounts.user")
    assert entry.detail["object_id"] == str(newbie.pk)
    assert entry.detail["fields"]["password"] == "(set)"
    assert entry.detail["fields"]["username"] == "newbie" and entry.detail["fields"]["is_superuser"] is False
    _assert_absent(entry, password, newbie.password, newbie.password.split("$")[-1])


def test_changing_a_password_is_named_and_not_shown(world: World) -> None:
    client, _ = superuser_client()
    alice = world.requester
    old_hash = alice.password
    url = f"{USERS}{alice.pk}/password/"
    password = "Another-Long-Passphrase-7"

    post_ok(client, url, form_data(client, url, password1=password, password2=password))

    alice.refresh_from_db()
    entry = only_entry("admin.changed", "accounts.user")
    assert entry.detail["changes"] == {"password": "(changed)"}
    _assert_absent(entry, password, old_hash, alice.password, old_hash.split("$")[-1], alice.password.split("$")[-1])


def test_deleting_a_person_records_what_they_were(world: World) -> None:
    client, _ = superuser_client()
    mallory = world.outsider
    User.objects.filter(pk=mallory.pk).update(is_staff=True)

    post_ok(client, f"{USERS}{mallory.pk}/delete/", {"post": "yes"})

    assert not User.objects.filter(pk=mallory.pk).exists()
    entry = only_entry("admin.deleted", "accounts.user")
    assert entry.detail["object_id"] == str(mallory.pk) and entry.detail["object"] == "mallory"
    assert entry.detail["fields"]["is_staff"] is True and entry.detail["fields"]["password"] == "(set)"
    _assert_absent(entry, mallory.password)


def test_a_bulk_delete_records_each_person_and_what_went_with_them(world: World) -> None:
    client, _ = superuser_client()
    doomed = [world.outsider, world.observer]
    selected = [str(user.pk) for user in doomed]

    confirm = client.post(USERS, {"action": "delete_selected", "_selected_action": selected})
    assert confirm.status_code == 200 and admin_entries() == []  # the confirmation page changes nothing
    post_ok(client, USERS, {"action": "delete_selected", "_selected_action": selected, "post": "yes"})

    assert not User.objects.filter(pk__in=selected).exists()
    entries = {entry.detail["object"]: entry.detail for entry in admin_entries("admin.deleted", "accounts.user")}
    assert sorted(entries) == ["mallory", "oscar"]
    assert all(detail["fields"]["password"] == "(set)" for detail in entries.values())
    assert entries["oscar"]["also_deleted"] == {"accounts.membership": 1}  # Observer on prod
    assert "also_deleted" not in entries["mallory"]


def test_groups_added_changed_and_deleted() -> None:
    client, _ = superuser_client()
    view = Permission.objects.get(codename="view_awsaccount")
    change = Permission.objects.get(codename="change_awsaccount")

    post_ok(
        client,
        "/admin/auth/group/add/",
        form_data(client, "/admin/auth/group/add/", name="ops", permissions=[str(view.pk)]),
    )
    group = Group.objects.get(name="ops")
    added = only_entry("admin.added", "auth.group")
    assert added.detail["fields"] == {"name": "ops", "permissions": [f"{view} (#{view.pk})"]}

    url = f"/admin/auth/group/{group.pk}/change/"
    post_ok(client, url, form_data(client, url, name="operators", permissions=[str(view.pk), str(change.pk)]))
    changes = only_entry("admin.changed", "auth.group").detail["changes"]
    assert changes["name"] == {"before": "ops", "after": "operators"}
    assert changes["permissions"]["before"] == [f"{view} (#{view.pk})"]
    assert sorted(changes["permissions"]["after"]) == sorted([f"{view} (#{view.pk})", f"{change} (#{change.pk})"])

    post_ok(client, f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    assert only_entry("admin.deleted", "auth.group").detail["fields"]["name"] == "operators"


# A group's name is free text: recorded as typed (the review page shows it escaped).
HOSTILE_GROUP = "ops\n\r\x1b[31m\u202e'\"`;$(id)|&>x\u2028"


@pytest.mark.parametrize("how", ["page", "action"])
def test_a_group_deleted_in_the_admin_is_a_change_for_each_member(world: World, how: str) -> None:
    """Who lost the group is on record, as for a group deleted outside the admin: each member's
    ``person.changed`` with the group gone from ``groups``, by the site admin, beside ``admin.deleted``."""
    client, root = superuser_client()
    ops, dev = Group.objects.create(name=HOSTILE_GROUP), Group.objects.create(name="dev")
    mallory, oscar = world.outsider, world.observer
    mallory.groups.add(ops)
    oscar.groups.add(ops, dev)
    mark = LogbookEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0

    if how == "page":
        post_ok(client, f"/admin/auth/group/{ops.pk}/delete/", {"post": "yes"})
    else:
        selected = {"action": "delete_selected", "_selected_action": [str(ops.pk)], "post": "yes"}
        post_ok(client, "/admin/auth/group/", selected)

    ops_named, dev_named = f"{HOSTILE_GROUP} (#{ops.pk})", f"dev (#{dev.pk})"
    entries = list(LogbookEntry.objects.filter(id__gt=mark, action="person.changed").order_by("id"))
    assert {entry.detail["object"]: entry.detail["changes"] for entry in entries} == {
        "mallory": {"groups": {"before": [ops_named], "after": []}},
        "oscar": {"groups": {"before": sorted([ops_named, dev_named]), "after": [dev_named]}},
    }
    assert len(entries) == 2 and all(entry.actor == root for entry in entries)
    assert only_entry("admin.deleted", "auth.group").detail["fields"]["name"] == HOSTILE_GROUP
    # The group's own deletion is the admin's entry alone, as any other change made in the admin.
    assert not LogbookEntry.objects.filter(id__gt=mark, action="group.changed").exists()


def test_email_addresses_and_the_verify_action(world: World) -> None:
    client, _ = superuser_client()
    alice = world.requester
    add = "/admin/account/emailaddress/add/"

    post_ok(client, add, form_data(client, add, user=str(alice.pk), email="alice@work.example"))
    address = EmailAddress.objects.get(email="alice@work.example")
    assert only_entry("admin.added", "account.emailaddress").detail["fields"]["verified"] is False

    url = f"/admin/account/emailaddress/{address.pk}/change/"
    post_ok(client, url, form_data(client, url, email="alice@home.example"))
    assert only_entry("admin.changed", "account.emailaddress").detail["changes"] == {
        "email": {"before": "alice@work.example", "after": "alice@home.example"}
    }

    post_ok(client, "/admin/account/emailaddress/", {"action": "make_verified", "_selected_action": [str(address.pk)]})
    verified = admin_entries("admin.changed", "account.emailaddress")[-1]
    assert verified.detail["changes"] == {"verified": {"before": False, "after": True}}

    post_ok(client, f"/admin/account/emailaddress/{address.pk}/delete/", {"post": "yes"})
    assert only_entry("admin.deleted", "account.emailaddress").detail["object_id"] == str(address.pk)


def test_second_factors_never_show_their_secret(world: World) -> None:
    """Seen and deleted (a lost second factor reset) in the admin, never added or edited there; the
    Logbook says a secret was set, never what it is."""
    from allauth.mfa.totp.internal.auth import TOTP

    client, _ = superuser_client()
    client.raise_request_exception = False
    alice = world.requester
    secret = "JBSWY3DPEHPK3PXPJBSWY3DP"
    assert client.get("/admin/mfa/authenticator/add/").status_code == 403
    authenticator = TOTP.activate(alice, secret).instance

    url = f"/admin/mfa/authenticator/{authenticator.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and secret not in page.content.decode()
    stored = Authenticator.objects.get(pk=authenticator.pk).data
    client.post(
        url, {"user": str(alice.pk), "type": "totp", "data": json.dumps({"secret": "KRSXG5CTMVRXEZLUKRSXG5CT"})}
    )
    assert Authenticator.objects.get(pk=authenticator.pk).data == stored  # not editable

    post_ok(client, f"/admin/mfa/authenticator/{authenticator.pk}/delete/", {"post": "yes"})
    deleted = only_entry("admin.deleted", "mfa.authenticator")
    assert deleted.detail["fields"]["data"] == "(set)"
    for entry in admin_entries():
        _assert_absent(entry, secret)


def _assert_absent(entry: LogbookEntry, *secrets: str) -> None:
    recorded = json.dumps(entry.detail)
    for secret in secrets:
        assert secret and secret not in recorded, f"{secret!r} is in the Logbook entry {entry.action}"
