"""A removal that finds the grant's account without Passport's marker (Windows: its description;
Linux: the ``passport-users`` group, which a user with sudo may leave).

A user with administrator rights may change its own account's description, the marker the removal
script goes by. The account was this grant's (it was made ready there), so the script disables it
and ends with its own exit code instead of "left untouched, exit 0": the grant is never called
removed while its account (perhaps still an Administrator, its password known to the requester)
stays on the host. It waits for an operator, its error and ``grant.removal_refused`` saying what
was left, and is retried: once the account is gone, the next try removes the grant.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from audit.models import LogbookEntry
from fleet import CommandResult
from fleet.linux_scripts import LINUX_LEFT
from fleet.scripts import MARKER_GROUP, REMOVAL_REFUSED_EXIT_CODE
from requests_app import services
from requests_app.models import Grant, GrantStatus, Instance, RequestStatus
from requests_app.services.provisioning import Outcome
from requests_app.services.provisioning.remove import NEEDS_OPERATOR_PREFIX
from requests_app.services.provisioning.settle import FINAL_EXIT_CODES
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet, failed, ok
from tests.requests_app.test_provisioning import (  # noqa: F401  (timings: the lease of 30 s, autouse)
    actions,
    active_request,
    grant,
    provisioning_request,
    reload,
    timings,
)

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")

# What the removal script writes, and exits with, when it disabled and left the account.
LEFT = CommandResult(
    command_id="cmd-rm-left",
    status="Failed",
    exit_code=REMOVAL_REFUSED_EXIT_CODE,
    stdout="",
    stderr="passport: rs-x was left here, disabled: it no longer carries Passport's marker",
)


def _script(fleet: FakeFleet) -> str:
    return str(fleet.calls[-1]["script"])


def test_an_account_left_without_the_marker_is_not_removed_but_waits_for_an_operator(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    host = make_instance(world.prod, "win-1", platform=Instance.Platform.WINDOWS)
    access_request, (grant_id,) = active_request(world, [host])
    # Made ready before creates reported the account's SID: found by its name alone (the SID's own
    # cases are in test_windows_account_sid).
    Grant.objects.filter(pk=grant_id).update(account_sid=None)
    username = grant(grant_id).username
    services.access_request_complete(access_request=access_request, actor=world.requester)

    outcomes = []
    for _ in range(3):
        fleet.will(LEFT)
        outcomes.append(services.grant_deprovision(grant_id=grant_id))
        frozen.shift(timedelta(minutes=16))
    # The grant made the account: the script is told so, and disables one it finds unmarked.
    assert "$madeByGrant = 'yes' -eq 'yes'" in _script(fleet).splitlines()

    assert all(outcome.retry_in for outcome in outcomes), outcomes
    left = grant(grant_id)
    assert (left.status, left.removed_at) == (GrantStatus.REMOVING, None)
    assert left.last_error == (
        f"{NEEDS_OPERATOR_PREFIX}the account {username} was left on the host, disabled: it no longer carries "
        "Passport's marker (its description was changed), so it was not deleted; remove it, then the removal "
        "is tried again"
    )
    assert reload(access_request).status == RequestStatus.COMPLETING
    log = actions(access_request)
    assert "grant.removed" not in log and "grant.removal_stuck" not in log and "grant.remove_retry" not in log
    (refused,) = LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removal_refused")
    assert refused.detail["username"] == username and refused.detail["command_id"] == "cmd-rm-left"
    assert refused.detail["attempt"] == 1  # said once, not at every try

    # An operator deleted the account: the next try finds none and removes the grant.
    fleet.will(ok("cmd-rm-gone"))
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert reload(access_request).status == RequestStatus.COMPLETED


def test_a_grant_that_never_made_its_account_leaves_an_unmarked_one_alone(world: World, fleet: FakeFleet) -> None:
    """Refused at its create because the name was someone else's account (exit 3): that account is
    not the grant's, and its removal neither disables it nor asks an operator."""
    host = make_instance(world.prod, "win-1", platform=Instance.Platform.WINDOWS)
    access_request, (grant_id,) = provisioning_request(world, [host])
    assert 3 in FINAL_EXIT_CODES
    fleet.will(failed(3, stderr="refusing: rs-x is not a Passport user"))
    services.grant_provision(grant_id=grant_id)
    # Failed for good, the request ends with it, and its grant is cleaned up.
    assert reload(access_request).status == RequestStatus.FAILED
    assert (grant(grant_id).status, grant(grant_id).ready_at) == (GrantStatus.REMOVING, None)

    fleet.will(ok("cmd-rm-untouched"))
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()

    assert "$madeByGrant = 'no' -eq 'yes'" in _script(fleet).splitlines()


def test_a_linux_user_out_of_passports_group_is_not_removed_but_waits_for_an_operator(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    access_request, (grant_id,) = active_request(world)  # a Linux host
    username = grant(grant_id).username
    services.access_request_complete(access_request=access_request, actor=world.requester)

    fleet.will(
        CommandResult(
            command_id="cmd-rm-locked",
            status="Failed",
            exit_code=REMOVAL_REFUSED_EXIT_CODE,
            stdout="",
            stderr=LINUX_LEFT.replace("$grant_user", username).replace("$marker", MARKER_GROUP),
        )
    )
    outcome = services.grant_deprovision(grant_id=grant_id)
    # The grant made the user: the script is told so, and locks one it finds out of the group.
    told = f"grant='{grant(grant_id).uid}'; made_by_grant='yes'; "
    assert any(line.startswith(told) for line in _script(fleet).splitlines())

    assert outcome.retry_in
    left = grant(grant_id)
    assert (left.status, left.removed_at) == (GrantStatus.REMOVING, None)
    assert left.last_error == (
        f"{NEEDS_OPERATOR_PREFIX}the account {username} was left on the host, locked, its processes ended: it is "
        "no longer in Passport's group (passport-users), or it was renamed, so it was not deleted; remove it (by its "
        "uid, its name may have changed), then the removal is tried again"
    )
    assert reload(access_request).status == RequestStatus.COMPLETING
    log = actions(access_request)
    assert "grant.removed" not in log and "grant.removal_stuck" not in log and "grant.remove_retry" not in log
    (refused,) = LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removal_refused")
    assert refused.detail["username"] == username and refused.detail["command_id"] == "cmd-rm-locked"

    # An operator deleted the user: the next try, at its time, finds none and removes the grant.
    frozen.shift(timedelta(seconds=outcome.retry_in))
    fleet.will(ok("cmd-rm-gone"))
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert reload(access_request).status == RequestStatus.COMPLETED


def test_a_linux_grant_that_never_made_its_user_leaves_an_unmarked_one_alone(world: World, fleet: FakeFleet) -> None:
    _, (grant_id,) = provisioning_request(world)
    fleet.will(failed(3, stderr="refusing: rs-x exists and is not a Passport user"))
    services.grant_provision(grant_id=grant_id)
    assert (grant(grant_id).status, grant(grant_id).ready_at) == (GrantStatus.REMOVING, None)

    fleet.will(ok("cmd-rm-untouched"))
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    told = f"grant='{grant(grant_id).uid}'; made_by_grant='no'; "
    assert any(line.startswith(told) for line in _script(fleet).splitlines())
