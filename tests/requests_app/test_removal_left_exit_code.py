"""A Linux removal's exit 10 is "the grant's user left Passport's group, locked and left for an
operator" only with the line the script writes then (``linux_left_line``) for this grant's user.

The account tools the script calls exit 10 themselves when they cannot lock /etc/group (a
config-management run holding /etc/group.lock): the script no longer ends with their code, but a
host's older copy of it did, and the portal does not take the code alone for a security event
(``grant.removal_refused``, "needs an operator" at the first try): that is an ordinary failed try,
retried, and removed once the lock is gone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from audit.models import LogbookEntry
from fleet import CommandResult
from fleet.scripts import REMOVAL_REFUSED_EXIT_CODE, linux_left_line
from requests_app import services
from requests_app.models import GrantStatus
from requests_app.services.provisioning.common import CLEANUP_ERROR_PREFIX
from requests_app.services.provisioning.remove import NEEDS_OPERATOR_PREFIX
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, ok
from tests.requests_app.test_provisioning import (  # noqa: F401  (timings: the lease of 30 s, autouse)
    actions,
    active_request,
    grant,
    timings,
)

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


def _exit_10(stderr: str) -> CommandResult:
    return CommandResult(
        command_id="cmd-rm-10", status="Failed", exit_code=REMOVAL_REFUSED_EXIT_CODE, stdout="", stderr=stderr
    )


def _is_an_ordinary_failed_try(world: World, fleet: FakeFleet, frozen: Any, stderr: Callable[[str], str]) -> None:
    """The removal ending with exit 10 and ``stderr`` (given the grant's username) is retried as any failure."""
    access_request, (grant_id,) = active_request(world)  # a Linux host
    services.access_request_complete(access_request=access_request, actor=world.requester)
    username = grant(grant_id).username
    fleet.will(_exit_10(stderr(username)))
    outcome = services.grant_deprovision(grant_id=grant_id)

    assert outcome.retry_in
    error = grant(grant_id).last_error
    assert error.startswith(CLEANUP_ERROR_PREFIX) and not error.startswith(NEEDS_OPERATOR_PREFIX), error
    assert f"the account {username} was left on the host" not in error, error  # the portal's "left" error
    log = actions(access_request)
    assert "grant.removal_refused" not in log and "grant.removal_stuck" not in log
    assert "grant.remove_retry" in log

    # The lock is gone at the next try, at its time: the user is removed, the grant with it.
    frozen.shift(timedelta(seconds=outcome.retry_in))
    fleet.will(ok("cmd-rm-done"))
    services.grant_deprovision(grant_id=grant_id)
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert not LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removal_refused").exists()


def test_userdel_failing_on_the_group_files_lock_is_retried_not_filed_as_a_user_that_left_the_group(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    # What an older copy of the script wrote, and exited with, on a devcloud host while
    # /etc/group was locked (tests/integration/test_removal_left_linux_group_lock.py).
    _is_an_ordinary_failed_try(
        world,
        fleet,
        frozen,
        lambda _user: (
            "userdel: lock /etc/group.lock already used by PID 1\nuserdel: cannot lock /etc/group; try again later."
        ),
    )


def test_the_left_line_of_another_user_does_not_make_an_exit_10_this_grants(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    _is_an_ordinary_failed_try(world, fleet, frozen, lambda _user: linux_left_line("rs-zzzzzzzz"))


def test_the_left_line_inside_other_text_is_not_the_scripts_line(world: World, fleet: FakeFleet, frozen: Any) -> None:
    _is_an_ordinary_failed_try(world, fleet, frozen, lambda user: f"usermod: '{linux_left_line(user)}' is no user")
