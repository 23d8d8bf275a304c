"""A Windows grant is for the kind of host it was asked and approved for, whatever the tag says later.

Whether a Windows instance is a domain controller comes from its ``PassportDomainController``
tag, which anyone with ``ec2:CreateTags`` may set or remove at any time. What Administrator
rights mean there (Administrators, or Domain Admins) is decided when the request is made: the
grant records it, approvers are shown it, and every script is rendered from it. A tag changed
since fails the grant for good instead of sending another kind of script; a tag that was wrong
from the start is found out by the host itself (each create script asks Windows for its role
first) and fails the grant for good too, saying so. Removal always undoes what was created.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from fleet import CommandResult, FleetError
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services.provisioning import Outcome
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet, created
from tests.requests_app.test_provisioning import retry_when_due

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

DOMAIN_ADMINS = "Add-ADGroupMember -Identity $domainAdmins"
ADMINISTRATORS = "Add-LocalGroupMember -SID $administrators"
ROLE = "(Get-CimInstance Win32_ComputerSystem).DomainRole"


def _dc(world: World) -> Instance:
    return make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)


def _approved(world: World, instance: Instance, *, admin_rights: bool = True) -> AccessRequest:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[instance], reason="patch", admin_rights=admin_rights
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    return access_request


def _retag(instance: Instance, *, domain_controller: bool) -> None:
    """What the next inventory sync stores after someone set or removed PassportDomainController."""
    Instance.objects.filter(pk=instance.pk).update(is_domain_controller=domain_controller)


def _actions(access_request: AccessRequest) -> list[str]:
    return list(
        LogbookEntry.objects.filter(request_id=access_request.pk).order_by("id").values_list("action", flat=True)
    )


def _entry(access_request: AccessRequest, action: str) -> LogbookEntry:
    return LogbookEntry.objects.get(request_id=access_request.pk, action=action)


# --- the grant records the kind of host -------------------------------------------------


def test_a_grant_records_whether_it_is_for_a_domain_controller(world: World) -> None:
    dc = _dc(world)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.windows, dc, world.web], reason="patch"
    )
    kinds = {grant.instance_id: grant.domain_controller for grant in access_request.grants.all()}
    assert kinds == {world.windows.pk: False, dc.pk: True, world.web.pk: False}


def test_the_migration_takes_the_kind_of_existing_grants_from_their_usernames(world: World) -> None:
    """The username is what was created on the host: a suffix is a domain account."""
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.windows, _dc(world)], reason="patch"
    )
    member, controller = access_request.grants.order_by("domain_controller")
    Grant.objects.filter(pk=member.pk).update(domain_controller=True)
    Grant.objects.filter(pk=controller.pk).update(domain_controller=False)
    migration = importlib.import_module("requests_app.migrations.0007_grant_domain_controller")

    migration.domain_controller_from_username(apps, None)

    assert Grant.objects.get(pk=member.pk).domain_controller is False
    assert Grant.objects.get(pk=controller.pk).domain_controller is True


# --- provisioning: the tag changed since the approval -----------------------------------


def test_a_member_server_tagged_a_domain_controller_after_the_approval_gets_no_domain_admins(
    world: World, fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    access_request = _approved(world, world.windows)  # approver saw "Windows: Administrators"
    _retag(world.windows, domain_controller=True)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.grant_provision(grant_id=grant_id)

    assert not any(DOMAIN_ADMINS in call["script"] or "New-ADUser" in call["script"] for call in fleet.calls)
    assert fleet.calls == []  # nothing sent
    assert outcome == Outcome()  # not retried
    grant = Grant.objects.get(pk=grant_id)
    assert grant.password_sealed is None  # no password made for it either
    assert grant.attempts == 1
    assert "domain controller" in grant.last_error and "approved" in grant.last_error
    changed = _entry(access_request, "grant.host_kind_changed")
    assert changed.detail == {
        "username": grant.username,
        "approved_for": "Windows member server",
        "now": "Windows domain controller",
    }
    assert _actions(access_request)[-3:] == ["grant.host_kind_changed", "grant.failed", "request.failed"]
    # Cleanup goes on, and removes what was created: a local account, never a directory one.
    assert grant.status == GrantStatus.REMOVING and ("deprovision_grant", grant_id) in queued
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert "if (('no' -eq 'yes') -or $onDomainController) {" in fleet.calls[-1]["script"]
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVED


def test_a_domain_controller_untagged_after_the_approval_gets_no_local_account(world: World, fleet: FakeFleet) -> None:
    dc = _dc(world)
    access_request = _approved(world, dc)  # approver saw "domain controller: Domain Admins"
    _retag(dc, domain_controller=False)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)

    assert services.grant_provision(grant_id=grant_id) == Outcome()

    assert not any("New-LocalUser" in call["script"] or ADMINISTRATORS in call["script"] for call in fleet.calls)
    grant = Grant.objects.get(pk=grant_id)
    assert grant.status == GrantStatus.REMOVING and "no longer tagged a domain controller" in grant.last_error
    assert _entry(access_request, "grant.host_kind_changed").detail["now"] == "Windows member server"
    services.grant_deprovision(grant_id=grant_id)
    assert "if (('yes' -eq 'yes') -or $onDomainController) {" in fleet.calls[-1]["script"]


def test_a_retry_after_the_tag_changed_fails_for_good(world: World, fleet: FakeFleet, time_machine: Any) -> None:
    access_request = _approved(world, world.windows)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    fleet.will(FleetError("Throttled"))
    assert services.grant_provision(grant_id=grant_id).retry_in
    _retag(world.windows, domain_controller=True)

    assert retry_when_due(time_machine, grant_id) == Outcome()

    assert len(fleet.calls) == 1 and DOMAIN_ADMINS not in fleet.calls[0]["script"]
    assert Grant.objects.get(pk=grant_id).attempts == 2
    assert "grant.host_kind_changed" in _actions(access_request)


def test_an_unchanged_tag_provisions_as_approved(world: World, fleet: FakeFleet) -> None:
    dc = _dc(world)
    (grant_id,) = services.access_request_begin_provisioning(request_id=_approved(world, dc).pk)

    assert services.grant_provision(grant_id=grant_id) == Outcome()

    assert Grant.objects.get(pk=grant_id).status == GrantStatus.READY
    assert DOMAIN_ADMINS in fleet.calls[0]["script"]


# --- provisioning: the tag was wrong from the start ----------------------------------------


def _windows_host(*, domain_controller: bool) -> Callable[..., CommandResult]:
    """A Windows host that is (or is not) a domain controller, running the create script it is
    sent as far as its role check: the refusal the script makes there, with its own words."""

    def run(*, script: str, **_: Any) -> CommandResult:
        check = re.search(r"^if \(" + re.escape(ROLE) + r" (-ge|-lt) 4\) \{\n  Refuse (\d+) '([^'\n]+)'", script, re.M)
        assert check, "the create script never asks the host for its role"
        refuses_a_domain_controller = check.group(1) == "-ge"
        if refuses_a_domain_controller is not domain_controller:
            return created("cmd-create")
        code, message = int(check.group(2)), check.group(3)
        return CommandResult(
            command_id="cmd-create", status="Failed", exit_code=code, stdout="", stderr=message + "\r\n"
        )

    return run


@pytest.mark.parametrize("tagged_dc", [False, True], ids=["untagged-domain-controller", "tagged-member-server"])
def test_a_host_that_is_not_what_its_tag_said_fails_the_grant_for_good_saying_the_tag_is_wrong(
    client: Any,
    world: World,
    fleet: FakeFleet,
    queued: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
    tagged_dc: bool,
) -> None:
    """The tag was wrong when the request was made (a domain controller without it gets the
    member-server script, which there would make a domain user, an admin of the domain with admin
    rights): the host refuses before it touches an account, and the grant fails for good with its
    reason in the grant's error and the Logbook, where approver and requester see it."""
    instance = _dc(world) if tagged_dc else world.windows
    access_request = _approved(world, instance)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    fleet.will(_windows_host(domain_controller=not tagged_dc))

    with django_capture_on_commit_callbacks(execute=True):
        assert services.grant_provision(grant_id=grant_id) == Outcome()  # not retried

    grant = Grant.objects.get(pk=grant_id)
    assert grant.attempts == 1 and len(fleet.calls) == 1
    said = "is not a domain controller" if tagged_dc else "is a domain controller"
    for error in (grant.last_error, _entry(access_request, "grant.failed").detail["error"]):
        assert "(exit 7)" in error and said in error and "PassportDomainController" in error
    assert _actions(access_request)[-2:] == ["grant.failed", "request.failed"]
    client.force_login(world.requester)
    page = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    assert said in page and "PassportDomainController=true" in page and "correct the tag" in page
    # Its removal follows; on a domain controller it never takes the member-server branch.
    assert grant.status == GrantStatus.REMOVING and ("deprovision_grant", grant_id) in queued
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert "-or $onDomainController) {" in fleet.calls[-1]["script"]
    assert Grant.objects.get(pk=grant_id).last_error == grant.last_error  # the reason stays visible


def test_a_host_that_is_what_its_tag_said_is_provisioned(world: World, fleet: FakeFleet) -> None:
    dc = _dc(world)
    requests = [_approved(world, world.windows), _approved(world, dc)]
    fleet.will(_windows_host(domain_controller=False), _windows_host(domain_controller=True))
    for access_request in requests:
        (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
        assert services.grant_provision(grant_id=grant_id) == Outcome()
        assert Grant.objects.get(pk=grant_id).status == GrantStatus.READY


# --- removal: always what was created --------------------------------------------------


@pytest.mark.parametrize(("created_on_dc", "branch"), [(True, "yes"), (False, "no")])
def test_removal_undoes_what_was_created_whatever_the_tag_says_now(
    world: World, fleet: FakeFleet, created_on_dc: bool, branch: str
) -> None:
    instance = _dc(world) if created_on_dc else world.windows
    access_request = _approved(world, instance)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    _retag(instance, domain_controller=not created_on_dc)

    services.access_request_complete(access_request=access_request, actor=world.requester)
    services.grant_deprovision(grant_id=grant_id)

    assert f"if (('{branch}' -eq 'yes') -or $onDomainController) {{" in fleet.calls[-1]["script"]
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVED
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED


# --- what people are shown --------------------------------------------------------------


def _admin_rights_cell(client: Any, world: World, access_request: AccessRequest) -> str:
    client.force_login(world.approver)
    page = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    start = page.index('data-testid="admin-rights"')
    return page[start : page.index("</dd>", start)]


def test_the_approver_is_shown_the_kind_the_grant_was_made_for(client: Any, world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.windows], reason="patch", admin_rights=True
    )
    _retag(world.windows, domain_controller=True)

    cell = _admin_rights_cell(client, world, access_request)
    assert "Windows: Administrators" in cell and "Domain Admins" not in cell
    client.force_login(world.approver)
    queue = client.get(reverse("requests:approvals")).content.decode()
    assert "Windows: Administrators" in queue and "Domain Admins" not in queue


def test_the_api_says_which_grants_are_on_a_domain_controller(world: World) -> None:
    dc = _dc(world)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.windows, dc], reason="patch"
    )
    _retag(dc, domain_controller=False)
    _retag(world.windows, domain_controller=True)
    api = APIClient()
    api.force_authenticate(world.approver)

    body = api.get(f"/api/requests/{access_request.pk}/").json()

    kinds = {grant["instance_id"]: grant["domain_controller"] for grant in body["grants"]}
    assert kinds == {world.windows.instance_id: False, dc.instance_id: True}


@pytest.mark.parametrize("created_on_dc", [True, False])
def test_the_remote_desktop_details_name_the_account_that_was_created(
    client: Any, world: World, fleet: FakeFleet, created_on_dc: bool
) -> None:
    instance = _dc(world) if created_on_dc else world.windows
    access_request = _approved(world, instance)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    _retag(instance, domain_controller=not created_on_dc)
    client.force_login(world.requester)

    page = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()

    assert ("a domain account: this instance is a domain controller" in page) is created_on_dc
    assert (f"<code>.\\{Grant.objects.get(pk=grant_id).username}</code>" in page) is not created_on_dc
