"""What a Windows removal reports beyond the user: the computer accounts it deleted.

A domain user may add computer accounts to the domain (ms-DS-MachineAccountQuota, 10 by default),
with passwords it picks; the removal on a domain controller deletes those it created and names
each in its output (``fleet.windows_scripts``). The names are the user's own text: they reach the
Logbook as data, shown through ``visible``, never as anything the portal acts on.
"""

from __future__ import annotations

import pytest

from audit.models import LogbookEntry
from fleet import CommandResult
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance
from requests_app.services.provisioning import Outcome
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

HOSTILE = "\u202eexe.TAB$\x1b[2J"


def _ended_on_a_domain_controller(world: World) -> tuple[AccessRequest, int]:
    dc = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[dc], reason="patch"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    services.access_request_complete(access_request=access_request, actor=world.requester)
    return access_request, grant_id


def _removal(*, exit_code: int, stdout: str, stderr: str = "") -> CommandResult:
    status = "Success" if exit_code == 0 else "Failed"
    return CommandResult(command_id="cmd-rm", status=status, exit_code=exit_code, stdout=stdout, stderr=stderr)


def _deleted_lines(*names: str) -> str:
    return "".join(f"passport: deleted computer account: {name}\r\n" for name in names)


def test_the_computer_accounts_a_removal_deleted_are_named_in_the_logbook(world: World, fleet: FakeFleet) -> None:
    access_request, grant_id = _ended_on_a_domain_controller(world)
    username = Grant.objects.get(pk=grant_id).username
    fleet.will(_removal(exit_code=0, stdout=_deleted_lines("EVIL01$", HOSTILE) + f"passport: {username} removed\r\n"))

    assert services.grant_deprovision(grant_id=grant_id) == Outcome()

    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVED
    removed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removed")
    assert removed.detail == {
        "username": username,
        "command_id": "cmd-rm",
        "computer_accounts_deleted": 2,
        "computer_account_names": ["EVIL01$", HOSTILE],
    }


def test_computer_accounts_deleted_by_a_removal_that_then_failed_are_named_with_its_retry(
    world: World, fleet: FakeFleet
) -> None:
    access_request, grant_id = _ended_on_a_domain_controller(world)
    fleet.will(_removal(exit_code=1, stdout=_deleted_lines("EVIL01$"), stderr="Remove-ADUser : server is busy"))

    assert services.grant_deprovision(grant_id=grant_id).retry_in

    retry = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.remove_retry")
    assert retry.detail["computer_accounts_deleted"] == 1
    assert retry.detail["computer_account_names"] == ["EVIL01$"]
    assert "server is busy" in retry.detail["error"]


def test_a_removal_that_deleted_no_computer_account_says_nothing_of_them(world: World, fleet: FakeFleet) -> None:
    access_request, grant_id = _ended_on_a_domain_controller(world)
    fleet.will(_removal(exit_code=0, stdout="passport: deleted computer account:\r\npassport: x removed\r\n"))

    services.grant_deprovision(grant_id=grant_id)

    removed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removed")
    assert set(removed.detail) == {"username", "command_id"}


def test_only_the_first_fifty_names_are_kept_and_all_are_counted(world: World, fleet: FakeFleet) -> None:
    access_request, grant_id = _ended_on_a_domain_controller(world)
    fleet.will(_removal(exit_code=0, stdout=_deleted_lines(*(f"PC{n}$" for n in range(70)))))

    services.grant_deprovision(grant_id=grant_id)

    removed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removed")
    assert removed.detail["computer_accounts_deleted"] == 70
    assert removed.detail["computer_account_names"] == [f"PC{n}$" for n in range(50)]
