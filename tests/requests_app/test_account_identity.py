"""An account's AWS identity: its account id is fixed once saved, and its role stays in that account
but may change there at any time, even while grants wait for a role to remove their users (a broken
role is the commonest reason they wait): such a change is its own Logbook entry.

The users Passport makes are in the AWS account the row named when they were made. Had the id
(and a role in the new account) been changed under live grants, the fleet would have assumed the
new role, SendCommand would have been refused there, EC2 there would have had no such instance,
and removal would have taken that for the host gone: the user left on the real host, its
sessions never ended, and the Logbook saying it went with the instance.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import Grant, GrantStatus
from requests_app.services.provisioning.common import CLEANUP_ERROR_PREFIX
from tests.audit.admin_forms import admin_entries, form_data, post_ok, superuser_client
from tests.conftest import World
from tests.factories import make_active_request
from tests.fakes.fleet import FakeFleet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

OTHER_ACCOUNT = "333333333333"
OTHER_ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/PassportPortal"
SAME_ACCOUNT_NEW_ROLE = "arn:aws:iam::111111111111:role/PassportPortalV2"


def _change_url(account: AwsAccount) -> str:
    return f"/admin/accounts/awsaccount/{account.pk}/change/"


def _stored(account: AwsAccount) -> tuple[str, str]:
    return AwsAccount.objects.filter(pk=account.pk).values_list("account_id", "role_arn").get()


def test_the_admin_shows_the_account_id_read_only_and_ignores_one_posted(world: World) -> None:
    client, _ = superuser_client()
    url = _change_url(world.prod)
    page = client.get(url).content.decode()
    assert 'name="account_id"' not in page and "111111111111" in page
    # The add page still asks for it: a new AWS account is a new row.
    assert 'name="account_id"' in client.get("/admin/accounts/awsaccount/add/").content.decode()

    # A crafted post naming another id (and its role there): the id is not the form's, the role is
    # refused as one of another account.
    refused = client.post(url, form_data(client, url, account_id=OTHER_ACCOUNT, role_arn=OTHER_ROLE))
    assert refused.status_code == 200 and "The role must be in this account." in refused.content.decode()
    # The id alone: saved, the id as it was.
    post_ok(client, url, form_data(client, url, account_id=OTHER_ACCOUNT, name="Acme Prod"))
    assert _stored(world.prod) == ("111111111111", "arn:aws:iam::111111111111:role/PassportPortal")
    assert AwsAccount.objects.get(pk=world.prod.pk).name == "Acme Prod"


def test_a_refused_id_change_keeps_removal_in_the_account_the_user_was_made_in(
    world: World, fleet: FakeFleet, django_capture_on_commit_callbacks: Any
) -> None:
    """The reviewer's case: the site admin moves the row to another AWS account while a grant is live,
    then the request ends. Removal goes to the account the user is in, and removes it there."""
    access_request = make_active_request(world.requester, world.prod, world.web)
    (grant,) = access_request.grants.all()
    client, _ = superuser_client()
    url = _change_url(world.prod)
    assert client.post(url, form_data(client, url, account_id=OTHER_ACCOUNT, role_arn=OTHER_ROLE)).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_complete(access_request=access_request, actor=world.requester)
    Grant.objects.filter(pk=grant.pk, status=GrantStatus.READY).update(status=GrantStatus.REMOVING)
    services.grant_deprovision(grant_id=grant.pk)

    assert {account.account_id for account in fleet.accounts} == {"111111111111"}
    assert [call["instance_id"] for call in fleet.calls] == [world.web.instance_id]
    removed = LogbookEntry.objects.get(action="grant.removed", request_id=access_request.pk)
    assert "instance_gone" not in removed.detail and removed.detail["command_id"]


def test_no_other_path_changes_the_account_id_or_puts_the_role_in_another_account(world: World) -> None:
    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.account_id, account.role_arn = OTHER_ACCOUNT, OTHER_ROLE
    with pytest.raises(ValidationError) as in_a_form:
        account.full_clean()
    assert (
        "cannot change once the account is saved (it is 111111111111)" in in_a_form.value.message_dict["account_id"][0]
    )
    with pytest.raises(ValidationError) as saved:  # a script, the shell: save() without clean()
        account.save()
    assert "account_id" in saved.value.message_dict

    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.role_arn = OTHER_ROLE
    with pytest.raises(ValidationError) as role_elsewhere:
        account.save(update_fields=["role_arn"])
    assert role_elsewhere.value.message_dict == {"role_arn": ["The role must be in this account."]}
    assert _stored(world.prod) == ("111111111111", "arn:aws:iam::111111111111:role/PassportPortal")

    # A save that leaves both as they are asks nothing of them.
    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.name = "Acme Prod"
    account.save()
    assert AwsAccount.objects.get(pk=world.prod.pk).name == "Acme Prod"


@pytest.mark.parametrize(
    "status", [GrantStatus.PROVISIONING, GrantStatus.READY, GrantStatus.FAILED, GrantStatus.REMOVING]
)
def test_the_role_changes_within_the_account_while_grants_wait_and_says_so_in_the_logbook(
    world: World, status: str
) -> None:
    access_request = make_active_request(world.requester, world.prod, world.web)
    Grant.objects.filter(request=access_request).update(status=status)
    client, root = superuser_client()
    url = _change_url(world.prod)

    post_ok(client, url, form_data(client, url, role_arn=SAME_ACCOUNT_NEW_ROLE))

    assert _stored(world.prod) == ("111111111111", SAME_ACCOUNT_NEW_ROLE)
    changed = LogbookEntry.objects.get(action="account.role_changed")
    assert (changed.actor_id, changed.account_id) == (root.pk, "111111111111")
    assert changed.detail == {
        "previous_role": "arn:aws:iam::111111111111:role/PassportPortal",
        "role": SAME_ACCOUNT_NEW_ROLE,
        "grants_waiting": 1,
    }
    # The admin's trail records the field's change as for any other.
    assert admin_entries("admin.changed", "accounts.awsaccount")[-1].detail["changes"]["role_arn"]


def test_a_script_changes_the_role_within_the_account_while_grants_wait_recorded_as_the_system(world: World) -> None:
    for instance in (world.web, world.db):
        access_request = make_active_request(world.requester, world.prod, instance)
        Grant.objects.filter(request=access_request).update(status=GrantStatus.REMOVING)
    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.role_arn = SAME_ACCOUNT_NEW_ROLE

    account.save(update_fields=["role_arn"])

    assert _stored(world.prod)[1] == SAME_ACCOUNT_NEW_ROLE
    changed = LogbookEntry.objects.get(action="account.role_changed")
    assert (changed.actor_label, changed.detail["grants_waiting"]) == ("system", 2)


def test_an_admin_repairs_the_role_removal_cannot_assume_and_removal_then_uses_it(
    world: World, fleet: FakeFleet
) -> None:
    """The reviewer's case: the portal's role was deleted or renamed, removal cannot assume it and the
    grant waits 'removing', its user on the host. Pointing the account at a working role in the same
    AWS account is the repair, and the next removal goes through it."""
    access_request = make_active_request(world.requester, world.prod, world.web)
    (grant,) = access_request.grants.all()
    Grant.objects.filter(pk=grant.pk).update(
        status=GrantStatus.REMOVING,
        last_error=CLEANUP_ERROR_PREFIX + "Cannot assume arn:aws:iam::111111111111:role/PassportPortal: AccessDenied",
    )
    client, _ = superuser_client()
    url = _change_url(world.prod)

    post_ok(client, url, form_data(client, url, role_arn=SAME_ACCOUNT_NEW_ROLE))
    services.grant_deprovision(grant_id=grant.pk)

    assert {(account.account_id, account.role_arn) for account in fleet.accounts} == {
        ("111111111111", SAME_ACCOUNT_NEW_ROLE)
    }
    assert [call["instance_id"] for call in fleet.calls] == [world.web.instance_id]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REMOVED


def test_the_role_still_cannot_move_to_another_account_while_grants_wait(world: World) -> None:
    access_request = make_active_request(world.requester, world.prod, world.web)
    Grant.objects.filter(request=access_request).update(status=GrantStatus.REMOVING)
    client, _ = superuser_client()
    url = _change_url(world.prod)

    refused = client.post(url, form_data(client, url, role_arn=OTHER_ROLE))

    assert refused.status_code == 200 and "The role must be in this account." in refused.content.decode()
    assert _stored(world.prod)[1] == "arn:aws:iam::111111111111:role/PassportPortal"
    assert not LogbookEntry.objects.filter(action="account.role_changed").exists()


@pytest.mark.parametrize("status", [GrantStatus.PENDING, GrantStatus.REMOVED])
def test_the_role_changes_within_the_account_with_no_entry_of_its_own_when_no_grant_waits(
    world: World, status: str
) -> None:
    access_request = make_active_request(world.requester, world.prod, world.web)
    Grant.objects.filter(request=access_request).update(status=status)
    # Another account's live grants are not this one's.
    make_active_request(world.requester, world.staging, world.stage_web)
    client, _ = superuser_client()
    url = _change_url(world.prod)

    post_ok(client, url, form_data(client, url, role_arn=SAME_ACCOUNT_NEW_ROLE))

    assert _stored(world.prod) == ("111111111111", SAME_ACCOUNT_NEW_ROLE)
    assert not LogbookEntry.objects.filter(action="account.role_changed").exists()
