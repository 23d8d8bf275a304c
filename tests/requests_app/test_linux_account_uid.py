"""A Linux grant keeps its account's uid, and its removal goes by it and by the portal's live grants.

A user with sudo may rename its own account; a removal that looked for the grant's name found
nothing and the grant was called removed while the account stayed. The create script names the
account's uid: the portal reads it strictly (Passport's range only), keeps it on the grant and gives
it to the removal. A user with sudo may also write grant records on its host: the removal is told
which of the person's grants on that host the portal holds live, and only those keep the user.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from audit.models import LogbookEntry
from fleet import CommandResult
from fleet.scripts import REMOVAL_REFUSED_EXIT_CODE, UID_FIRST, UID_LAST, linux_left_line
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance
from requests_app.services.provisioning import Outcome
from requests_app.services.provisioning.remove import NEEDS_OPERATOR_PREFIX
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

UID = UID_FIRST + 41


def _created(command_id: str = "cmd-create", *, stdout: str) -> CommandResult:
    return CommandResult(command_id=command_id, status="Success", exit_code=0, stdout=stdout, stderr="")


def _uid_line(uid: object) -> str:
    return f"passport: account uid: {uid}\n"


def _request(world: World, instances: list[Instance]) -> tuple[AccessRequest, list[int]]:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=instances, reason="patch"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    return access_request, list(services.access_request_begin_provisioning(request_id=access_request.pk))


def _provisioned(
    world: World, instance: Instance, create: CommandResult, fleet: FakeFleet
) -> tuple[AccessRequest, int]:
    access_request, (grant_id,) = _request(world, [instance])
    fleet.will(create)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    return access_request, grant_id


def _told(script: str) -> dict[str, str]:
    """What a single host's removal script is told: its grant line's values."""
    (line,) = [line for line in script.splitlines() if line.startswith("grant='")]
    return dict(re.findall(r"(\w+)='?([^';]*)'?", line))


def test_the_uid_a_create_reports_is_kept_and_given_to_the_removal(world: World, fleet: FakeFleet) -> None:
    access_request, grant_id = _provisioned(
        world, world.web, _created(stdout=_uid_line(UID) + "passport: rs-x ready for grant g\n"), fleet
    )

    made = Grant.objects.get(pk=grant_id)
    assert (made.status, made.account_uid) == (GrantStatus.READY, UID)
    ready = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.ready")
    assert ready.detail["account_uid"] == UID

    services.access_request_complete(access_request=access_request, actor=world.requester)
    services.grant_deprovision(grant_id=grant_id)
    told = _told(fleet.calls[-1]["script"])
    assert (told["account_uid"], told["made_by_grant"], told["portal_live"]) == (str(UID), "yes", "")


@pytest.mark.parametrize(
    "stdout",
    [
        "passport: rs-x ready\n",
        _uid_line(0),  # root's
        _uid_line(1000),  # an ordinary user's
        _uid_line(UID_FIRST - 1),
        _uid_line(UID_LAST + 1),
        _uid_line(f"0{UID}"),
        _uid_line(f"{UID}'; pkill -KILL -u 0; '"),
        _uid_line(f"{UID}\r"),
        _uid_line("\N{FULLWIDTH DIGIT ONE}" + str(UID)[1:]),
        _uid_line(UID) + _uid_line(UID + 1),
    ],
    ids=["none", "root", "ordinary", "below", "above", "leading-zero", "hostile", "cr", "fullwidth", "two"],
)
def test_anything_but_one_uid_of_passports_range_is_not_kept_and_the_removal_goes_by_the_name(
    world: World, fleet: FakeFleet, stdout: str
) -> None:
    access_request, grant_id = _provisioned(world, world.web, _created(stdout=stdout), fleet)

    assert Grant.objects.get(pk=grant_id).account_uid is None
    assert "account_uid" not in LogbookEntry.objects.get(request_id=access_request.pk, action="grant.ready").detail
    services.access_request_complete(access_request=access_request, actor=world.requester)
    services.grant_deprovision(grant_id=grant_id)
    script = fleet.calls[-1]["script"]
    assert _told(script)["account_uid"] == ""
    assert "pkill -KILL -u 0" not in script


def test_a_windows_grant_keeps_no_uid_whatever_its_output_says(world: World, fleet: FakeFleet) -> None:
    _, grant_id = _provisioned(world, world.windows, _created(stdout=_uid_line(UID)), fleet)
    assert Grant.objects.get(pk=grant_id).account_uid is None


def test_a_renamed_account_waits_for_an_operator_with_its_uid_named(world: World, fleet: FakeFleet) -> None:
    access_request, grant_id = _provisioned(world, world.web, _created(stdout=_uid_line(UID)), fleet)
    username = Grant.objects.get(pk=grant_id).username
    services.access_request_complete(access_request=access_request, actor=world.requester)

    fleet.will(
        CommandResult(
            command_id="cmd-rm-left",
            status="Failed",
            exit_code=REMOVAL_REFUSED_EXIT_CODE,
            stdout="",
            stderr=f"passport: {username}'s account (uid {UID}) has another name now\n{linux_left_line(username)}\n",
        )
    )
    assert services.grant_deprovision(grant_id=grant_id).retry_in

    left = Grant.objects.get(pk=grant_id)
    assert left.status == GrantStatus.REMOVING and left.last_error.startswith(NEEDS_OPERATOR_PREFIX)
    assert f"the account {username} (uid {UID}) was left on the host, locked" in left.last_error
    assert "renamed" in left.last_error
    refused = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removal_refused")
    assert refused.detail["account_uid"] == UID
    assert not LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removed").exists()


def test_only_the_persons_grants_the_portal_holds_live_on_the_host_keep_the_user(
    world: World, fleet: FakeFleet
) -> None:
    """Request A (web and web-2, removed by one command for both) and the person's request B (web)
    are ready; an older request C on web is removed, and another person has a grant on web. A's
    removal tells web that B's grant is live, and web-2 that none is."""
    web_2 = make_instance(world.prod, "web-2", platform=Instance.Platform.LINUX)
    older, (older_grant,) = _request(world, [world.web])
    fleet.will(_created(stdout=_uid_line(UID)))
    services.grant_provision(grant_id=older_grant)
    services.access_request_complete(access_request=older, actor=world.requester)
    services.grant_deprovision(grant_id=older_grant)
    assert Grant.objects.get(pk=older_grant).status == GrantStatus.REMOVED

    a, a_grants = _request(world, [world.web, web_2])
    fleet.will_batch(
        {
            world.web.instance_id: _created(stdout=_uid_line(UID)),
            web_2.instance_id: _created(stdout=_uid_line(UID + 7)),
        }
    )
    services.grants_provision(grant_ids=a_grants)
    _, (b_grant,) = _request(world, [world.web])
    fleet.will(_created(stdout=_uid_line(UID)))
    services.grant_provision(grant_id=b_grant)
    neighbour = services.access_request_create(
        requester=world.member, account=world.prod, instances=[world.web], reason="patch"
    )
    services.access_request_approve(access_request=neighbour, approver=world.approver)
    (neighbour_grant,) = services.access_request_begin_provisioning(request_id=neighbour.pk)
    assert Grant.objects.get(pk=neighbour_grant).username != Grant.objects.get(pk=b_grant).username

    services.access_request_complete(access_request=a, actor=world.requester)
    services.grants_deprovision(grant_ids=a_grants)

    script: str = fleet.batch_calls[-1]["script"]
    by_host: dict[str, dict[str, Any]] = {}
    for line in script.splitlines():
        found = re.match(r"\s+'([^']+)'\) (grant=.*) ;;$", line)
        if found:
            by_host[found[1]] = dict(re.findall(r"(\w+)='?([^';]*)'?", found[2]))
    uid_of = {grant.instance.instance_id: grant.uid for grant in Grant.objects.filter(pk__in=a_grants)}
    assert by_host[world.web.instance_id] == {
        "grant": str(uid_of[world.web.instance_id]),
        "made_by_grant": "yes",
        "account_uid": str(UID),
        "live_known": "yes",
        "portal_live": str(Grant.objects.get(pk=b_grant).uid),
    }
    assert by_host[web_2.instance_id] == {
        "grant": str(uid_of[web_2.instance_id]),
        "made_by_grant": "yes",
        "account_uid": str(UID + 7),
        "live_known": "yes",
        "portal_live": "",
    }
