"""What a script makes, deletes or writes in bulk of who gets in is on record too (accounts.change_trail):
rows made and deleted, a queryset's update(), bulk_update() and bulk_create(), and the Django groups and
permissions that open the admin's pages to staff.

Plain django_db: the Logbook's triggers refuse the DELETE a transactional test's flush would run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import NotSupportedError, transaction
from django.db.models import F

from accounts.change_trail import changes_recorded_elsewhere
from accounts.models import ApprovalPolicy, AwsAccount, Membership, SamlIdentityProvider, User
from audit.models import LogbookEntry
from tests.accounts.test_saml import CUSTOMER, idp_entry
from tests.conftest import World
from tests.factories import make_account, make_user

pytestmark = pytest.mark.django_db

GIVEN = {"before": False, "after": True}


def _mark() -> int:
    last = LogbookEntry.objects.order_by("-pk").first()
    return last.pk if last else 0


def _since(mark: int) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(pk__gt=mark).order_by("pk"))


def _actions(mark: int) -> list[str]:
    return [entry.action for entry in _since(mark)]


# Made and deleted by a script.


def test_an_account_its_policy_and_an_idp_made_by_a_script_are_on_record(settings: Any, db: None) -> None:
    settings.PASSPORT_SAML_IDPS = []
    mark = _mark()
    account = AwsAccount.objects.create(
        account_id="333333333333", name="Shadow", role_arn="arn:aws:iam::333333333333:role/PassportPortal"
    )
    ApprovalPolicy.objects.create(account=account, auto_approve=True, auto_approve_admin_rights=True)
    idp = SamlIdentityProvider.objects.create(**idp_entry("shadow", CUSTOMER, "customer"))

    made, policy, provider = _since(mark)
    assert (made.action, policy.action, provider.action) == (
        "account.changed",
        "approval_policy.changed",
        "saml_idp.changed",
    )
    assert made.detail["created"] is True and made.account_id == "333333333333"
    assert made.detail["changes"]["role_arn"] == {
        "before": None,
        "after": "arn:aws:iam::333333333333:role/PassportPortal",
    }
    assert policy.detail["created"] is True and policy.account_id == "333333333333"
    assert policy.detail["changes"]["auto_approve_admin_rights"] == {"before": None, "after": True}
    assert provider.detail["created"] is True and provider.detail["object_id"] == str(idp.pk)
    assert provider.detail["changes"]["x509cert"]["after"].startswith("SHA256:")
    assert "BEGIN CERTIFICATE" not in str(provider.detail)


def test_a_staff_person_or_auditor_made_by_a_script_is_on_record(db: None) -> None:
    mark = _mark()
    User.objects.create_user(username="shadow-auditor", is_auditor=True)
    User.objects.create_user(username="shadow-staff", is_staff=True)
    User.objects.create_user(username="nobody-special")
    entries = _since(mark)
    assert [(entry.action, entry.detail["object"], entry.detail["created"]) for entry in entries] == [
        ("person.changed", "shadow-auditor", True),
        ("person.changed", "shadow-staff", True),
    ]


def test_a_membership_deleted_by_a_script_is_on_record(world: World) -> None:
    membership = Membership.objects.get(user=world.approver, account=world.prod)
    pk = membership.pk
    mark = _mark()
    membership.delete()
    (entry,) = _since(mark)
    assert entry.action == "membership.changed" and entry.actor_label == "system"
    assert entry.account_id == world.prod.account_id
    assert entry.detail["deleted"] is True and entry.detail["object_id"] == str(pk)
    assert entry.detail["changes"]["role"] == {"before": "admin", "after": None}
    assert entry.detail["changes"]["can_approve"] == {"before": True, "after": None}


def test_a_policy_and_an_idp_deleted_by_a_script_are_on_record(settings: Any, world: World) -> None:
    settings.PASSPORT_SAML_IDPS = []
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2, deny_admin_rights=True)
    idp = SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
    mark = _mark()
    ApprovalPolicy.objects.filter(account=world.prod).delete()  # a queryset's delete, too
    idp.delete()
    policy, provider = (entry for entry in _since(mark) if entry.action.endswith(".changed"))
    assert policy.action == "approval_policy.changed" and policy.detail["deleted"] is True
    assert policy.detail["changes"]["deny_admin_rights"] == {"before": True, "after": None}
    assert policy.detail["changes"]["approvals_required"] == {"before": 2, "after": None}
    assert provider.action == "saml_idp.changed" and provider.detail["deleted"] is True
    assert provider.detail["changes"]["enabled"] == {"before": True, "after": None}


def test_a_person_deleted_by_a_script_is_on_record_with_their_memberships(world: World) -> None:
    person = make_user("leaver", is_superuser=True, is_staff=True)
    with changes_recorded_elsewhere():
        Membership.objects.create(user=person, account=world.prod, role="admin")
    mark = _mark()
    person.delete()
    entries = _since(mark)
    assert [entry.action for entry in entries] == ["membership.changed", "person.changed"]
    assert all(entry.detail["deleted"] is True for entry in entries)
    assert entries[1].detail["object"] == "leaver"
    assert entries[1].detail["changes"]["is_superuser"] == {"before": True, "after": None}
    assert "password" not in entries[1].detail["changes"]
    assert "pbkdf2" not in str(entries[1].detail) and "argon2" not in str(entries[1].detail)


def test_an_account_deleted_by_a_script_is_on_record_with_what_went_with_it(world: World) -> None:
    account = make_account("444444444444", "Short-lived")
    ApprovalPolicy.objects.create(account=account)
    with changes_recorded_elsewhere():
        Membership.objects.create(user=world.requester, account=account, role="admin")
    mark = _mark()
    account.delete()
    assert sorted(_actions(mark)) == ["account.changed", "approval_policy.changed", "membership.changed"]
    assert {entry.account_id for entry in _since(mark)} == {"444444444444"}


def test_a_deletion_goes_with_its_transaction(world: World) -> None:
    mark = _mark()
    with pytest.raises(RuntimeError), transaction.atomic():
        Membership.objects.filter(account=world.prod).delete()
        raise RuntimeError("rolled back")
    assert _since(mark) == []
    assert Membership.objects.filter(account=world.prod).count() == 4


def test_a_deletion_a_service_records_itself_is_not_written_again(world: World) -> None:
    mark = _mark()
    with changes_recorded_elsewhere():
        Membership.objects.get(user=world.observer, account=world.prod).delete()
    assert _since(mark) == []


def test_made_and_deleted_in_the_admin_are_its_trail_alone(settings: Any, world: World) -> None:
    from tests.audit.admin_forms import superuser_client

    settings.PASSPORT_SAML_IDPS = []
    idp = SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
    client, _root = superuser_client()
    mark = _mark()
    response = client.post(f"/admin/accounts/samlidentityprovider/{idp.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content.decode()[:2000]
    actions = _actions(mark)
    assert "admin.deleted" in actions and "saml_idp.changed" not in actions


# A queryset's update(), bulk_update() and bulk_create().


def test_site_admin_given_by_a_queryset_update_is_on_record_per_person(world: World) -> None:
    mark = _mark()
    count = User.objects.filter(pk__in=[world.outsider.pk, world.observer.pk]).update(is_superuser=True, is_staff=True)
    assert count == 2
    entries = _since(mark)
    assert [entry.action for entry in entries] == ["person.changed", "person.changed"]
    assert [entry.detail["object_id"] for entry in entries] == sorted(
        [str(world.outsider.pk), str(world.observer.pk)], key=int
    )
    for entry in entries:
        assert entry.actor_label == "system" and entry.detail["bulk"] == "update"
        assert entry.detail["changes"] == {"is_staff": GIVEN, "is_superuser": GIVEN}


def test_a_role_raised_by_a_queryset_update_is_on_record_and_only_where_it_changed(world: World) -> None:
    mark = _mark()
    Membership.objects.filter(account=world.prod).update(role="admin")
    (entry,) = _since(mark)  # the observer's; the others were Admin already
    assert entry.action == "membership.changed" and entry.account_id == world.prod.account_id
    assert entry.detail["object_id"] == str(Membership.objects.get(user=world.observer, account=world.prod).pk)
    assert entry.detail["changes"] == {"role": {"before": "observer", "after": "admin"}}


def test_a_related_managers_update_and_an_expression_are_on_record(world: World) -> None:
    mark = _mark()
    world.prod.memberships.filter(user=world.observer).update(can_approve=~F("can_approve"))
    (entry,) = _since(mark)
    assert entry.detail["changes"] == {"can_approve": GIVEN}


def test_a_policy_loosened_by_a_queryset_update_is_on_record(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    mark = _mark()
    ApprovalPolicy.objects.filter(account=world.prod).update(approvals_required=1, auto_approve=True)
    (entry,) = _since(mark)
    assert entry.action == "approval_policy.changed" and entry.account_id == world.prod.account_id
    assert entry.detail["changes"] == {
        "approvals_required": {"before": 2, "after": 1},
        "auto_approve": GIVEN,
    }


def test_an_update_of_nothing_watched_writes_nothing(world: World) -> None:
    from django.utils import timezone

    mark = _mark()
    AwsAccount.objects.filter(pk=world.prod.pk).update(inventory_synced_at=timezone.now())
    User.objects.filter(pk=world.outsider.pk).update(is_superuser=False)  # no change
    User.objects.filter(pk=world.outsider.pk).update(last_login=timezone.now())
    assert _since(mark) == []


def test_an_update_goes_with_its_transaction(world: World) -> None:
    mark = _mark()
    with pytest.raises(RuntimeError), transaction.atomic():
        User.objects.filter(pk=world.outsider.pk).update(is_superuser=True)
        raise RuntimeError("rolled back")
    assert _since(mark) == []


def test_an_update_a_service_records_itself_is_not_written_again(world: World) -> None:
    mark = _mark()
    with changes_recorded_elsewhere():
        User.objects.filter(pk=world.outsider.pk).update(is_auditor=True)
    assert _since(mark) == []


def test_a_bulk_update_is_on_record_per_row(world: World) -> None:
    rows = list(Membership.objects.filter(account=world.prod).order_by("pk"))
    for row in rows:
        row.role = "observer"
    mark = _mark()
    Membership.objects.bulk_update(rows, ["role"])
    entries = _since(mark)
    assert len(entries) == 3  # every Admin of prod, not the observer
    assert {entry.detail["changes"]["role"]["before"] for entry in entries} == {"admin"}


def test_a_bulk_create_that_grants_is_on_record(world: World) -> None:
    newcomer = make_user("nina")
    mark = _mark()
    made = Membership.objects.bulk_create(
        [
            Membership(user=newcomer, account=world.prod, role="admin"),
            Membership(user=newcomer, account=world.staging, role="none"),  # gives nothing
        ]
    )
    (entry,) = _since(mark)
    assert entry.action == "membership.changed" and entry.detail["bulk"] == "create"
    assert entry.detail["created"] is True and entry.detail["object_id"] == str(made[0].pk)
    assert entry.detail["changes"]["role"] == {"before": None, "after": "admin"}


def test_a_bulk_create_whose_rows_cannot_be_told_apart_is_refused(world: World) -> None:
    with pytest.raises(NotSupportedError):
        Membership.objects.bulk_create(
            [Membership(user=world.outsider, account=world.prod, role="admin")], ignore_conflicts=True
        )
    assert not Membership.objects.filter(user=world.outsider).exists()


# Django's groups and permissions: what a staff person may do in the admin.


def test_a_permission_or_group_given_by_a_script_is_on_record(world: World) -> None:
    change_account = Permission.objects.get(codename="change_awsaccount")
    mark = _mark()
    group = Group.objects.create(name="account editors")
    group.permissions.add(change_account)
    world.outsider.groups.add(group)
    world.observer.user_permissions.add(change_account)
    group.user_set.add(world.approver)
    entries = _since(mark)
    assert [(entry.action, entry.detail["object"]) for entry in entries] == [
        ("group.changed", "account editors"),
        ("person.changed", "mallory"),
        ("person.changed", "oscar"),
        ("person.changed", "carol"),
    ]
    assert entries[0].detail["changes"]["permissions"]["after"] == [f"{change_account} (#{change_account.pk})"]
    assert entries[1].detail["changes"] == {"groups": {"before": [], "after": [f"account editors (#{group.pk})"]}}
    assert entries[2].detail["changes"]["user_permissions"]["before"] == []
    assert entries[3].detail["changes"]["groups"]["after"] == [f"account editors (#{group.pk})"]


def test_a_group_taken_away_by_a_script_is_on_record(world: World) -> None:
    group = Group.objects.create(name="account editors")
    world.outsider.groups.add(group)
    mark = _mark()
    world.outsider.groups.clear()
    (entry,) = _since(mark)
    assert entry.detail["changes"] == {"groups": {"before": [f"account editors (#{group.pk})"], "after": []}}


# Secrets.


def test_no_secret_is_written_by_a_made_changed_or_deleted_row(settings: Any, world: World) -> None:
    settings.PASSPORT_SAML_IDPS = []
    mark = _mark()
    person = User.objects.create_superuser(username="root2", email="r@x.test", password="Zz9-secret-pw")
    User.objects.filter(pk=person.pk).update(is_active=False, password=person.password)
    idp = SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
    SamlIdentityProvider.objects.filter(pk=idp.pk).update(x509cert="-----BEGIN CERTIFICATE-----\nMIIBx\n-----END")
    idp.delete()
    person.delete()
    text = str([entry.detail for entry in _since(mark)])
    assert len(_since(mark)) >= 5
    for secret in (person.password, "Zz9-secret-pw", "MIIB", CUSTOMER.cert_pem.splitlines()[1]):
        assert secret not in text


def test_a_policy_made_or_deleted_in_a_fixture_load_is_left_to_it(world: World) -> None:
    # raw saves (loaddata) are not compared, as before: a fixture's rows are the state it describes.
    policy = ApprovalPolicy(account=world.prod, auto_approve_max_duration=timedelta(hours=1))
    mark = _mark()
    ApprovalPolicy.save_base(policy, raw=True)
    assert _since(mark) == []


def test_memberships_a_saml_sign_in_removes_are_its_entry_alone(world: World, settings: Any) -> None:
    from django.test import Client

    from devcloud.idp import Person
    from tests.accounts.test_saml import INTERNAL, sign_in

    settings.PASSPORT_SAML_IDPS = [idp_entry("internal", INTERNAL, "internal")]
    sign_in(
        Client(), "internal", INTERNAL, Person("ann@x.test", "ann@x.test", "A", "Nn", ["passport:111111111111:admin"])
    )
    mark = _mark()
    sign_in(Client(), "internal", INTERNAL, Person("ann@x.test", "ann@x.test", "A", "Nn", []))
    actions = _actions(mark)
    assert "auth.saml_synced" in actions and "membership.changed" not in actions
    synced = LogbookEntry.objects.get(pk__gt=mark, action="auth.saml_synced")
    assert [removed["account"] for removed in synced.detail["memberships_removed"]] == ["111111111111"]


def test_a_group_deleted_by_a_script_is_on_record(world: World) -> None:
    group = Group.objects.create(name="account editors")
    group.permissions.add(Permission.objects.get(codename="change_awsaccount"))
    world.outsider.groups.add(group)
    mark = _mark()
    group_pk = group.pk
    group.delete()
    (entry, member) = _since(mark)
    assert entry.action == "group.changed" and entry.detail["deleted"] is True
    assert entry.detail["changes"] == {"name": {"before": "account editors", "after": None}}
    # What it gave its member went with it (accounts.change_trail_joins).
    assert (member.action, member.detail["object"]) == ("person.changed", "mallory")
    assert member.detail["changes"] == {"groups": {"before": [f"account editors (#{group_pk})"], "after": []}}
