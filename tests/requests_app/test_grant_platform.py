"""A grant is for the platform it was asked and approved for, whatever the inventory says later.

The approver decides on what Administrator rights mean on the instance's platform when the
request is made (sudo on Linux; Administrators, or Domain Admins, on Windows), and the user made
there is of that platform. The grant records it (``Grant.platform``), and every script of the
grant (create, remove, the account's expiry, the CA keys' refresh) is rendered from it, never from
the instance's platform now. An instance the inventory says is of another platform by the time
the user is created fails the grant for good before anything is sent (``grant.host_kind_changed``),
and removal always undoes what the recorded platform would have made. Only a Windows instance is a
domain controller: the ``PassportDomainController`` tag on a Linux one changes nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services.provisioning import Outcome
from terminal.services import terminal_unavailable_reason
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

LINUX_SUDO = "/etc/sudoers.d/passport-"  # every Linux create and removal script names the user's sudoers files
LINUX_REMOVE = "userdel"
WINDOWS_ADMINISTRATORS = "Add-LocalGroupMember -SID $administrators"
WINDOWS_CREATE = "New-LocalUser"
WINDOWS_REMOVE = "Remove-LocalUser"
WINDOWS_EXPIRY_ONLY = "Set-LocalUser -SID $account.SID -AccountExpires $expires"


def _inventory_now_says(instance: Instance, platform: str) -> None:
    """What a later inventory sync stores after the platform it was told changed."""
    Instance.objects.filter(pk=instance.pk).update(platform=platform)


def _approved(world: World, instances: list[Instance], *, admin_rights: bool = True) -> AccessRequest:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=instances, reason="patch", admin_rights=admin_rights
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    return access_request


def _active(world: World, instance: Instance) -> tuple[AccessRequest, int]:
    access_request = _approved(world, [instance])
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.ACTIVE
    return access_request, grant_id


def _actions(access_request: AccessRequest) -> list[str]:
    return list(
        LogbookEntry.objects.filter(request_id=access_request.pk).order_by("id").values_list("action", flat=True)
    )


def _entry(access_request: AccessRequest, action: str) -> LogbookEntry:
    return LogbookEntry.objects.get(request_id=access_request.pk, action=action)


# --- the grant records the platform ---------------------------------------------------------


def test_a_grant_records_the_platform_of_its_instance_when_the_request_is_made(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web, world.windows], reason="patch"
    )
    _inventory_now_says(world.web, Instance.Platform.WINDOWS)
    _inventory_now_says(world.windows, Instance.Platform.LINUX)

    platforms = {grant.instance_id: grant.platform for grant in Grant.objects.filter(request=access_request)}

    assert platforms == {world.web.pk: Instance.Platform.LINUX, world.windows.pk: Instance.Platform.WINDOWS}


def test_a_linux_instance_tagged_a_domain_controller_gets_an_ordinary_linux_grant(world: World) -> None:
    """A row from before the inventory kept the tag to Windows: the grant is made as for any Linux host,
    with the person's one username there (shared by their other requests), not a domain account's."""
    tagged = make_instance(world.prod, "tagged-1", platform=Instance.Platform.LINUX, is_domain_controller=True)
    (grant,) = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[tagged], reason="patch"
    ).grants.all()
    (plain,) = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="patch"
    ).grants.all()

    assert grant.platform == Instance.Platform.LINUX
    assert grant.domain_controller is False
    assert grant.username == plain.username  # no domain controller's suffix


def test_the_migration_takes_the_platform_of_existing_grants_from_their_instances(world: World) -> None:
    dc = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web, world.windows, dc], reason="patch"
    )
    linux, windows, controller = (
        access_request.grants.get(instance=instance) for instance in (world.web, world.windows, dc)
    )
    Grant.objects.filter(pk=linux.pk).update(platform=Instance.Platform.WINDOWS, domain_controller=True)
    Grant.objects.filter(pk__in=[windows.pk, controller.pk]).update(platform=Instance.Platform.LINUX)
    migration = importlib.import_module("requests_app.migrations.0015_grant_platform")

    migration.platform_from_instance(apps, None)

    migrated = {grant.pk: (grant.platform, grant.domain_controller) for grant in Grant.objects.all()}
    assert migrated == {
        linux.pk: (Instance.Platform.LINUX, False),  # a Linux user is never a domain account
        windows.pk: (Instance.Platform.WINDOWS, False),
        controller.pk: (Instance.Platform.WINDOWS, True),
    }


# --- provisioning: the inventory says another platform since the approval ------------------


def test_a_linux_request_with_sudo_is_not_made_a_windows_administrator_when_the_instance_is_now_said_to_be_windows(
    world: World, fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    access_request = _approved(world, [world.web])  # the approver saw "Linux: sudo"
    _inventory_now_says(world.web, Instance.Platform.WINDOWS)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.grant_provision(grant_id=grant_id)

    assert fleet.calls == [] and fleet.batch_calls == []  # nothing sent
    assert fleet.handoffs_seen == [] and fleet.handoffs == {}  # no password handed over
    assert outcome == Outcome()  # not retried
    grant = Grant.objects.get(pk=grant_id)
    assert grant.password_sealed is None
    assert grant.attempts == 1
    assert "now said to be Windows" in grant.last_error and "approved for Linux" in grant.last_error
    changed = _entry(access_request, "grant.host_kind_changed")
    assert changed.detail == {"username": grant.username, "approved_for": "Linux", "now": "Windows member server"}
    assert _actions(access_request)[-3:] == ["grant.host_kind_changed", "grant.failed", "request.failed"]
    # Its removal follows, as for any failed grant: what Linux would have made is undone on Linux.
    assert grant.status == GrantStatus.REMOVING and ("deprovision_grant", grant_id) in queued
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    (removal,) = fleet.calls
    assert removal["platform"] == Instance.Platform.LINUX and LINUX_REMOVE in removal["script"]
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVED


def test_a_windows_request_gets_no_linux_user_when_the_instance_is_now_said_to_be_linux(
    world: World, fleet: FakeFleet
) -> None:
    access_request = _approved(world, [world.windows])
    _inventory_now_says(world.windows, Instance.Platform.LINUX)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)

    assert services.grant_provision(grant_id=grant_id) == Outcome()

    assert fleet.calls == [] and fleet.batch_calls == []
    grant = Grant.objects.get(pk=grant_id)
    assert grant.status == GrantStatus.REMOVING and grant.password_sealed is None
    changed = _entry(access_request, "grant.host_kind_changed")
    assert changed.detail == {"username": grant.username, "approved_for": "Windows member server", "now": "Linux"}
    services.grant_deprovision(grant_id=grant_id)
    (removal,) = fleet.calls
    assert removal["platform"] == Instance.Platform.WINDOWS and WINDOWS_REMOVE in removal["script"]


def test_a_host_now_said_to_be_windows_fails_alone_and_the_rest_of_its_batch_is_provisioned(
    world: World, fleet: FakeFleet
) -> None:
    """The grants of one request on Linux hosts of one region are created by one Run Command: the
    one whose instance changed is left out of it, and failed for good; the others are made."""
    third = make_instance(world.prod, "app-1")
    access_request = _approved(world, [world.web, world.db, third])
    _inventory_now_says(world.db, Instance.Platform.WINDOWS)
    grant_ids = services.access_request_begin_provisioning(request_id=access_request.pk)

    services.grants_provision(grant_ids=grant_ids)

    assert fleet.calls == []
    (batch,) = fleet.batch_calls
    assert batch["platform"] == Instance.Platform.LINUX
    assert sorted(batch["instance_ids"]) == sorted([world.web.instance_id, third.instance_id])
    states = {grant.instance_id: grant.status for grant in Grant.objects.filter(request=access_request)}
    assert states == {world.web.pk: GrantStatus.READY, world.db.pk: GrantStatus.FAILED, third.pk: GrantStatus.READY}
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.ACTIVE


def test_an_instance_said_to_be_of_its_platform_again_before_provisioning_is_provisioned(
    world: World, fleet: FakeFleet
) -> None:
    access_request = _approved(world, [world.web])
    _inventory_now_says(world.web, Instance.Platform.WINDOWS)
    _inventory_now_says(world.web, Instance.Platform.LINUX)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)

    assert services.grant_provision(grant_id=grant_id) == Outcome()

    (create,) = fleet.calls
    assert create["platform"] == Instance.Platform.LINUX and LINUX_SUDO in create["script"]
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.READY


# --- live grants: every later script is of the recorded platform ---------------------------


@pytest.mark.parametrize(
    ("made_on", "now", "removal"),
    [
        (Instance.Platform.LINUX, Instance.Platform.WINDOWS, LINUX_REMOVE),
        (Instance.Platform.WINDOWS, Instance.Platform.LINUX, WINDOWS_REMOVE),
    ],
)
def test_removal_undoes_what_was_made_whatever_the_inventory_says_now(
    world: World, fleet: FakeFleet, made_on: str, now: str, removal: str
) -> None:
    instance = world.web if made_on == Instance.Platform.LINUX else world.windows
    access_request, grant_id = _active(world, instance)
    _inventory_now_says(instance, now)

    services.access_request_complete(access_request=access_request, actor=world.requester)
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()

    sent = fleet.calls[-1]
    assert sent["platform"] == made_on and removal in sent["script"]
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVED
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED


@pytest.mark.parametrize(
    ("made_on", "now", "script_of"),
    [
        (Instance.Platform.LINUX, Instance.Platform.WINDOWS, LINUX_SUDO),
        (Instance.Platform.WINDOWS, Instance.Platform.LINUX, WINDOWS_EXPIRY_ONLY),
    ],
)
def test_an_extension_moves_the_account_expiry_with_a_script_of_the_platform_made_on(
    world: World, fleet: FakeFleet, made_on: str, now: str, script_of: str
) -> None:
    instance = world.web if made_on == Instance.Platform.LINUX else world.windows
    access_request, grant_id = _active(world, instance)
    _inventory_now_says(instance, now)
    Grant.objects.filter(pk=grant_id).update(host_expires_at=None)  # the host is behind its request's end

    assert services.grant_sync_account_expiry(grant_id=grant_id) == Outcome()

    sent = fleet.calls[-1]
    assert sent["platform"] == made_on and script_of in sent["script"]
    assert WINDOWS_CREATE not in sent["script"]  # never a new password, nor a new user of the other kind
    assert _actions(access_request)[-1] == "grant.expiry_moved"


def test_a_linux_grant_keeps_its_ca_keys_refreshed_whatever_the_inventory_says_now(
    world: World, fleet: FakeFleet
) -> None:
    _, linux_grant = _active(world, world.web)
    _, windows_grant = _active(world, world.windows)
    _inventory_now_says(world.web, Instance.Platform.WINDOWS)
    _inventory_now_says(world.windows, Instance.Platform.LINUX)

    assert services.grants_needing_key_refresh() == [linux_grant]
    assert services.grant_refresh_authorized_keys(grant_id=windows_grant) == Outcome()
    assert services.grant_refresh_authorized_keys(grant_id=linux_grant) == Outcome()

    sent = fleet.calls[-1]
    assert len(fleet.calls) == 3  # the two creates and one refresh: nothing for the Windows grant
    assert sent["platform"] == Instance.Platform.LINUX and LINUX_SUDO in sent["script"]
    assert "refresh CA keys" in sent["comment"]


# --- what people are shown --------------------------------------------------------------


def test_the_request_page_the_approvals_queue_and_the_api_show_the_platform_the_request_was_made_for(
    client: Any, world: World
) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="patch", admin_rights=True
    )
    _inventory_now_says(world.web, Instance.Platform.WINDOWS)
    client.force_login(world.approver)

    page = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    row = page[page.index(f'<tr data-instance="{world.web.instance_id}">') :]
    row = row[: row.index("</tr>")]
    assert "<td>Linux</td>" in row and "Windows" not in row
    cell = page[page.index('data-testid="admin-rights"') :]
    cell = cell[: cell.index("</dd>")]
    assert "Linux: sudo" in cell and "Windows" not in cell
    queue = client.get(reverse("requests:approvals")).content.decode()
    assert "Linux: sudo" in queue and "Administrators" not in queue
    api = APIClient()
    api.force_authenticate(world.approver)
    (grant,) = api.get(f"/api/requests/{access_request.pk}/").json()["grants"]
    assert grant["platform"] == "linux" and grant["domain_controller"] is False


def test_a_linux_grant_is_reached_by_its_terminal_and_never_by_a_password_whatever_the_inventory_says_now(
    world: World, fleet: FakeFleet
) -> None:
    _, grant_id = _active(world, world.web)
    _inventory_now_says(world.web, Instance.Platform.WINDOWS)
    grant = Grant.objects.select_related("request__account", "instance").get(pk=grant_id)

    assert terminal_unavailable_reason(grant=grant, user=world.requester) is None
    with pytest.raises(RequestRuleError, match="SSH certificates; there is no password"):
        services.grant_reveal_password(grant=grant, user=world.requester)
