"""A Windows grant keeps its account's SID, and its removal goes by it.

A user with administrator rights may rename its own account; a removal that looked for the grant's
name found nothing and the grant was called removed while the account stayed. The create script
names the account's SID: the portal reads it strictly, keeps it on the grant, and gives it to the
removal, which finds the account by it. What the removal leaves (renamed, or another account of the
grant's name) waits for an operator as an unmarked account does; on a domain controller the computer
accounts it deleted on the way are named in the Logbook, and a later try, once an operator deleted the
account, is still given the SID to find the rest by.
"""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import LogbookEntry
from fleet import CommandResult
from fleet.scripts import REMOVAL_REFUSED_EXIT_CODE
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services.provisioning import Outcome
from requests_app.services.provisioning.remove import NEEDS_OPERATOR_PREFIX
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

SID = "S-1-5-21-3623811015-3361044348-30300820-1013"


def _created(command_id: str = "cmd-create", *, stdout: str) -> CommandResult:
    return CommandResult(command_id=command_id, status="Success", exit_code=0, stdout=stdout, stderr="")


def _sid_line(sid: str) -> str:
    return f"passport: account sid: {sid}\r\n"


def _provisioned(
    world: World, instance: Instance, create: CommandResult, fleet: FakeFleet
) -> tuple[AccessRequest, int]:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[instance], reason="patch"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    fleet.will(create)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    return access_request, grant_id


def _dc(world: World) -> Instance:
    return make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)


def _grant_sid_line(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip().startswith("$grantSid =")]


@pytest.mark.parametrize("domain_controller", [False, True], ids=["member-server", "domain-controller"])
def test_the_sid_a_create_reports_is_kept_and_given_to_the_removal(
    world: World, fleet: FakeFleet, domain_controller: bool
) -> None:
    host = _dc(world) if domain_controller else world.windows
    access_request, grant_id = _provisioned(
        world, host, _created(stdout=_sid_line(SID) + "passport: rs-x ready\r\n"), fleet
    )

    made = Grant.objects.get(pk=grant_id)
    assert (made.status, made.account_sid) == (GrantStatus.READY, SID)
    ready = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.ready")
    assert ready.detail["account_sid"] == SID

    services.access_request_complete(access_request=access_request, actor=world.requester)
    services.grant_deprovision(grant_id=grant_id)
    assert _grant_sid_line(fleet.calls[-1]["script"]) == [f"$grantSid = '{SID}'"]


@pytest.mark.parametrize(
    "stdout",
    [
        "passport: rs-x ready\r\n",  # none named (devcloud's Windows hosts write nothing at all)
        "",
        _sid_line(SID + "'; Remove-LocalUser Administrator; '"),
        _sid_line("S-1-5-32-544"),
        _sid_line("S-1-5-21-1-2-3-500"),
        _sid_line(SID) + _sid_line("S-1-5-21-1-2-3-1001"),
    ],
    ids=["none", "empty", "hostile", "a-group", "builtin-administrator", "two"],
)
def test_anything_but_one_valid_sid_is_not_kept_and_the_removal_goes_by_the_name(
    world: World, fleet: FakeFleet, stdout: str
) -> None:
    access_request, grant_id = _provisioned(world, world.windows, _created(stdout=stdout), fleet)

    made = Grant.objects.get(pk=grant_id)
    assert (made.status, made.account_sid) == (GrantStatus.READY, None)
    ready = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.ready")
    assert "account_sid" not in ready.detail

    services.access_request_complete(access_request=access_request, actor=world.requester)
    services.grant_deprovision(grant_id=grant_id)
    script = fleet.calls[-1]["script"]
    assert _grant_sid_line(script) == ["$grantSid = ''"]
    assert "Administrator; '" not in script and "S-1-5-32-544" not in script and SID not in script


def test_a_linux_grant_keeps_no_sid_whatever_its_output_says(world: World, fleet: FakeFleet) -> None:
    _, grant_id = _provisioned(world, world.web, _created(stdout=_sid_line(SID)), fleet)
    assert Grant.objects.get(pk=grant_id).account_sid is None


def _left(command_id: str, stdout: str = "", stderr: str = "") -> CommandResult:
    return CommandResult(
        command_id=command_id, status="Failed", exit_code=REMOVAL_REFUSED_EXIT_CODE, stdout=stdout, stderr=stderr
    )


def test_a_renamed_account_waits_for_an_operator_with_its_sid_and_its_computer_accounts_named(
    world: World, fleet: FakeFleet
) -> None:
    access_request, grant_id = _provisioned(world, _dc(world), _created(stdout=_sid_line(SID)), fleet)
    username = Grant.objects.get(pk=grant_id).username
    services.access_request_complete(access_request=access_request, actor=world.requester)

    fleet.will(
        _left(
            "cmd-rm-left",
            stdout="passport: deleted computer account: EVIL01$\r\n",
            stderr=f"passport: the account {SID} made as {username} was left here, disabled: it was renamed",
        )
    )
    assert services.grant_deprovision(grant_id=grant_id).retry_in

    left = Grant.objects.get(pk=grant_id)
    assert left.status == GrantStatus.REMOVING
    assert left.last_error.startswith(NEEDS_OPERATOR_PREFIX)
    # The operator is told which account to look for: by its SID, since its name may be another now.
    assert f"the account {username} (SID {SID}) was left on the host, disabled" in left.last_error
    assert "renamed" in left.last_error
    refused = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removal_refused")
    assert refused.detail["computer_accounts_deleted"] == 1
    assert refused.detail["computer_account_names"] == ["EVIL01$"]
    assert refused.detail["account_sid"] == SID

    # Another try that leaves it again is not written again, unless it deleted computer accounts.
    fleet.will(_left("cmd-rm-again"), _left("cmd-rm-more", stdout="passport: deleted computer account: EVIL03$\r\n"))
    for _ in range(2):
        Grant.objects.filter(pk=grant_id).update(next_attempt_at=None)
        assert services.grant_deprovision(grant_id=grant_id).retry_in
    refusals = LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removal_refused").order_by("id")
    assert [entry.detail["command_id"] for entry in refusals] == ["cmd-rm-left", "cmd-rm-more"]
    assert refusals.last().detail["computer_account_names"] == ["EVIL03$"]  # type: ignore[union-attr]

    # An operator deleted the account: the next try is still given the SID, and the computer accounts
    # it finds by it (made meanwhile, or missed) are deleted and named with the removal.
    fleet.will(
        _created("cmd-rm-after", stdout="passport: deleted computer account: EVIL02$\r\npassport: x removed\r\n")
    )
    Grant.objects.filter(pk=grant_id).update(next_attempt_at=None)  # its back-off waited out
    calls = len(fleet.calls)
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert len(fleet.calls) == calls + 1
    assert _grant_sid_line(fleet.calls[-1]["script"]) == [f"$grantSid = '{SID}'"]
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVED
    removed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removed")
    assert removed.detail["computer_account_names"] == ["EVIL02$"]
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED


def test_a_stored_sid_that_is_no_longer_valid_never_reaches_a_script(world: World, fleet: FakeFleet) -> None:
    """Written by hand, or by a bug: the removal is not sent, and fails (retried) saying why."""
    access_request, grant_id = _provisioned(world, world.windows, _created(stdout=_sid_line(SID)), fleet)
    Grant.objects.filter(pk=grant_id).update(account_sid="S-1-5-21-1-2-3-1001'; logoff 1; '")
    services.access_request_complete(access_request=access_request, actor=world.requester)
    sent = len(fleet.calls)

    outcome: Any = services.grant_deprovision(grant_id=grant_id)

    assert outcome.retry_in
    assert len(fleet.calls) == sent
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVING
