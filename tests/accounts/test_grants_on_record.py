"""Site admin and a role on an account are on record however they were given: `manage.py
createsuperuser`, a script's save, a fixture (the change trail's ``person.changed`` and
``membership.changed``, by `system`: accounts.change_trail), as well as in the admin (its
``admin.changed``) and at a SAML sign-in (its ``auth.saml_synced``), each of which is on record
once, by its own entry."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client

from accounts.models import Membership, User
from audit.models import LogbookEntry
from devcloud.idp import Person
from tests.accounts.test_saml import INTERNAL, idp_entry, sign_in, signed_in_user
from tests.audit.admin_forms import add_inline_row, form_data, post_ok, superuser_client
from tests.audit.test_admin_trail_accounts import ACCOUNTS, _row
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db

GRANTS = ("person.changed", "membership.changed")


def _last_id() -> int:
    return LogbookEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _granted(*, since: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    entries = LogbookEntry.objects.filter(action__in=GRANTS, id__gt=since).order_by("id")
    return [(entry.action, entry.actor_label, entry.account_id, entry.detail) for entry in entries]


def _subject(row: User | Membership) -> dict[str, str]:
    return {"model": row._meta.label_lower, "object_id": str(row.pk), "object": str(row)}


def test_the_first_break_glass_admin_made_by_createsuperuser_is_on_record(db: None, monkeypatch: Any) -> None:
    mark = _last_id()
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Zz9-breakglass-pw-long")
    call_command("createsuperuser", "--noinput", "--username", "breakglass", "--email", "bg@example.com")
    user = User.objects.get(username="breakglass")
    assert user.is_superuser and user.is_active and user.has_usable_password()
    made = {"before": None, "after": True}
    assert _granted(since=mark) == [
        (
            "person.changed",
            "system",
            "",
            {
                **_subject(user),
                "created": True,
                "changes": {
                    # The email names the person (accounts.email_keys): on record, its key only as changed.
                    "email": {"before": None, "after": "bg@example.com"},
                    "email_key": "(changed)",
                    "identity_store": {"before": None, "after": user.identity_store},
                    "is_active": made,
                    "is_auditor": {"before": None, "after": False},
                    "is_staff": made,
                    "is_superuser": made,
                },
            },
        )
    ]


def test_a_script_making_someone_site_admin_is_on_record_once(world: World) -> None:
    mark = _last_id()
    person = world.requester
    person.is_superuser = person.is_staff = True
    person.save()
    person.save()  # already one: nothing new
    person.save(update_fields=["last_login"])
    given = {"before": False, "after": True}
    assert _granted(since=mark) == [
        ("person.changed", "system", "", {**_subject(person), "changes": {"is_staff": given, "is_superuser": given}})
    ]


def test_staff_alone_is_on_record_too(world: World) -> None:
    # It opens the admin's sign-in (nothing more without model permissions): a change of who gets in.
    mark = _last_id()
    world.observer.is_staff = True
    world.observer.save()
    assert _granted(since=mark) == [
        (
            "person.changed",
            "system",
            "",
            {**_subject(world.observer), "changes": {"is_staff": {"before": False, "after": True}}},
        )
    ]


def test_a_grant_goes_with_its_transaction(world: World) -> None:
    mark = _last_id()
    with pytest.raises(RuntimeError), transaction.atomic():
        world.requester.is_superuser = True
        world.requester.save()
        raise RuntimeError("rolled back")
    assert _granted(since=mark) == []


def test_raising_a_membership_to_admin_by_a_script_is_on_record(world: World) -> None:
    membership = Membership.objects.get(user=world.observer, account=world.prod)
    mark = _last_id()
    membership.role = Membership.Role.ADMIN
    membership.save()
    membership.save()  # the same again: nothing new
    assert _granted(since=mark) == [
        (
            "membership.changed",
            "system",
            world.prod.account_id,
            {**_subject(membership), "changes": {"role": {"before": "observer", "after": "admin"}}},
        )
    ]


def test_a_new_membership_that_grants_something_is_on_record_and_one_that_grants_nothing_is_not(
    world: World,
) -> None:
    newcomer = make_user("nina")
    mark = _last_id()
    Membership.objects.create(user=newcomer, account=world.staging, role="none")
    granting = Membership.objects.create(user=newcomer, account=world.prod, role="observer", can_approve=True)
    assert _granted(since=mark) == [
        (
            "membership.changed",
            "system",
            world.prod.account_id,
            {
                **_subject(granting),
                "created": True,
                "changes": {
                    "user": {"before": None, "after": f"nina (#{newcomer.pk})"},
                    "account": {"before": None, "after": f"{world.prod} (#{world.prod.pk})"},
                    "can_approve": {"before": None, "after": True},
                    "principal_arn": {"before": None, "after": ""},
                    "role": {"before": None, "after": "observer"},
                },
            },
        )
    ]


def test_lowering_a_membership_is_on_record_too(world: World) -> None:
    membership = Membership.objects.get(user=world.requester, account=world.prod)
    mark = _last_id()
    membership.role = Membership.Role.OBSERVER
    membership.save()
    assert _granted(since=mark) == [
        (
            "membership.changed",
            "system",
            world.prod.account_id,
            {**_subject(membership), "changes": {"role": {"before": "admin", "after": "observer"}}},
        )
    ]


def test_site_admin_given_in_the_admin_is_on_record_once_as_the_admins_change(world: World) -> None:
    client, root = superuser_client()
    mark = _last_id()
    url = f"/admin/accounts/user/{world.observer.pk}/change/"
    post_ok(client, url, form_data(client, url, is_superuser="on", is_staff="on"))
    world.observer.refresh_from_db()
    assert world.observer.is_superuser
    assert _granted(since=mark) == []
    (change,) = LogbookEntry.objects.filter(id__gt=mark, action="admin.changed")
    assert change.actor == root and "is_superuser" in change.detail["changes"]


def test_a_role_given_in_the_admin_is_on_record_once_as_the_admins_change(world: World) -> None:
    client, root = superuser_client()
    newcomer = make_user("nina")
    membership = Membership.objects.get(user=world.observer, account=world.prod)
    url = f"{ACCOUNTS}{world.prod.pk}/change/"
    data = form_data(client, url)
    data[f"{_row(data, 'memberships', membership.pk)}-role"] = ["admin"]
    add_inline_row(data, "memberships", user=str(newcomer.pk), role="admin")
    mark = _last_id()
    post_ok(client, url, data)
    assert Membership.objects.get(user=newcomer, account=world.prod).role == "admin"
    membership.refresh_from_db()
    assert membership.role == "admin"
    assert _granted(since=mark) == []
    entries = LogbookEntry.objects.filter(id__gt=mark, detail__model="accounts.membership")
    assert sorted((entry.action, entry.actor) for entry in entries) == [("admin.added", root), ("admin.changed", root)]


def test_site_admin_from_the_identity_provider_is_on_record_once_as_the_sign_in(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = [idp_entry("internal", INTERNAL, "internal")]
    boss = Person("boss@x.test", "boss@x.test", "B", "Oss", ["passport:site-admin", "passport:111111111111:admin"])
    mark = _last_id()
    web = Client()
    sign_in(web, "internal", INTERNAL, boss)
    site_admin = signed_in_user(web)
    assert site_admin is not None and site_admin.is_superuser
    assert Membership.objects.get(user=site_admin, account__account_id="111111111111").role == "admin"
    assert _granted(since=mark) == []
    synced = LogbookEntry.objects.get(id__gt=mark, action="auth.saml_synced")
    assert synced.detail["site_admin"] is True
    assert [added["account"] for added in synced.detail["memberships_added"]] == ["111111111111"]


def test_a_grant_to_nobody_fails_at_its_record_as_a_broken_reference(world: World) -> None:
    """The record's append checks the references written before it (audit.services): a membership
    of a person who does not exist is refused there, not recorded with a blank name."""
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user_id=2**31 - 1, account=world.prod, role="admin")
