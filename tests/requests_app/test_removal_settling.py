"""How a removal ends when it cannot run, or when another worker took it over.

Against the fake fleet, with the helpers of test_provisioning: a removal the fleet refuses for
good because the instance is gone ends the grant (the user went with the host); one it refuses
for good on a host still there goes on being retried, flagged for an operator; and a worker whose
lease was taken over settles nothing when its late result lands, for a removal or a create.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet import CommandResult, FleetError
from requests_app import services
from requests_app.models import Grant, GrantStatus, Instance, RequestStatus
from requests_app.passwords import unseal_password
from requests_app.services.leases import lease_new_until
from requests_app.services.provisioning import Outcome
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet, created, failed, ok
from tests.requests_app.test_provisioning import (  # noqa: F401  (timings: the lease of 30 s, autouse)
    T0,
    actions,
    active_request,
    grant,
    provisioning_request,
    reload,
    timings,
)

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


def _ending(world: World) -> tuple[Any, int]:
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    return access_request, grant_id


def test_removal_from_a_terminated_instance_ends_the_grant_and_the_request(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """The instance is terminated, the user gone with it: the fleet says so for good. The grant
    is removed at once, its Logbook entry saying why, and the request completes."""
    access_request, grant_id = _ending(world)
    fleet.will(
        FleetError(
            f"SendCommand to {world.web.instance_id} refused: InvalidInstanceId (the instance is terminated)",
            retryable=False,
            instance_gone=True,
        )
    )

    assert services.grant_deprovision(grant_id=grant_id) == Outcome()

    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVED
    assert left.removed_at == T0 and left.lease_until is None and left.next_attempt_at is None
    assert reload(access_request).status == RequestStatus.COMPLETED
    assert actions(access_request)[-2:] == ["grant.removed", "request.completed"]
    assert "grant.remove_retry" not in actions(access_request)
    removed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removed")
    assert removed.detail["instance_gone"] is True
    assert removed.detail["command_id"] is None
    assert "the instance is terminated" in removed.detail["error"]


def test_a_terminated_domain_controller_leaves_its_domain_user_flagged_not_removed(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """A domain controller's grant made a domain user (New-ADUser), which the other domain
    controllers keep by replication: the one named going away does not take it along. The grant
    is not called removed; it waits for an operator, said once, with what is left where."""
    dc = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[dc], reason="patch the domain"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).domain_controller
    services.access_request_complete(access_request=access_request, actor=world.requester)
    gone = FleetError(
        f"SendCommand to {dc.instance_id} refused: InvalidInstanceId (the instance is terminated)",
        retryable=False,
        instance_gone=True,
    )
    outcomes = []
    for _ in range(3):
        fleet.will(gone)
        outcomes.append(services.grant_deprovision(grant_id=grant_id))
        frozen.shift(timedelta(minutes=16))

    assert all(outcome.retry_in for outcome in outcomes), outcomes
    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVING
    assert "needs an operator" in left.last_error and "domain" in left.last_error
    assert reload(access_request).status == RequestStatus.COMPLETING
    log = actions(access_request)
    assert "grant.removed" not in log and "grant.remove_retry" not in log
    assert log.count("grant.removal_stuck") == 1
    stuck = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removal_stuck")
    assert stuck.detail["domain_user_left"] is True


def test_a_terminated_linux_instance_ends_its_grant_even_one_recorded_as_for_a_domain_controller(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """Grants made before only Windows instances could be domain controllers may say so on a Linux
    host (its tag said it): a Linux user is never a domain account, so it went with the instance."""
    access_request, grant_id = _ending(world)
    Grant.objects.filter(pk=grant_id).update(domain_controller=True)
    fleet.will(
        FleetError(
            f"SendCommand to {world.web.instance_id} refused: InvalidInstanceId (the instance is terminated)",
            retryable=False,
            instance_gone=True,
        )
    )

    assert services.grant_deprovision(grant_id=grant_id) == Outcome()

    assert grant(grant_id).status == GrantStatus.REMOVED
    assert reload(access_request).status == RequestStatus.COMPLETED
    log = actions(access_request)
    assert "grant.removal_stuck" not in log and log[-2:] == ["grant.removed", "request.completed"]
    removed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removed")
    assert removed.detail["instance_gone"] is True and "domain user" not in removed.detail["error"]


def test_a_refusal_for_good_on_a_host_still_there_is_retried_and_flagged_once(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """SendCommand refuses for good (the document, the role) but the instance is there, and so is
    the user: the grant is not called removed. It is retried, flagged for an operator, and the
    Logbook says so once, not at every attempt."""
    access_request, grant_id = _ending(world)
    stuck = FleetError(f"SendCommand to {world.web.instance_id} refused: InvalidDocument", retryable=False)
    outcomes = []
    for _ in range(4):
        fleet.will(stuck)
        outcomes.append(services.grant_deprovision(grant_id=grant_id))
        frozen.shift(timedelta(minutes=16))

    assert all(outcome.retry_in for outcome in outcomes), outcomes
    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVING
    assert left.cleanup_attempts == 4
    assert "needs an operator" in left.last_error and "InvalidDocument" in left.last_error
    assert reload(access_request).status == RequestStatus.COMPLETING
    log = actions(access_request)
    assert log.count("grant.removal_stuck") == 1
    assert "grant.remove_retry" not in log and "grant.removed" not in log

    # Once an operator mended it, the next attempt removes the user; the flag goes with it.
    fleet.will(ok("cmd-rm-mended"))
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert grant(grant_id).last_error == ""
    assert reload(access_request).status == RequestStatus.COMPLETED


def test_removal_refuses_an_aws_account_other_than_the_one_the_request_was_made_in(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """The account's row names another AWS account than when the request was made (the model refuses
    that change; a queryset's update() or SQL does not ask). There EC2 would have no such instance,
    and "no such instance" would read as the host gone: so nothing is sent, not even the sessions'
    listing, and the grant waits for an operator, its user still on the host in the first account."""
    access_request, grant_id = _ending(world)
    AwsAccount.objects.filter(pk=world.prod.pk).update(
        account_id="333333333333", role_arn="arn:aws:iam::333333333333:role/PassportPortal"
    )
    # What the real gateway in 333333333333 would say, were anything sent there.
    fleet.will(
        FleetError(
            "SendCommand refused: InvalidInstanceId (EC2 has no such instance)", retryable=False, instance_gone=True
        )
    )
    fleet.calls.clear()  # the create's
    fleet.accounts.clear()

    outcomes = []
    for _ in range(2):
        outcomes.append(services.grant_deprovision(grant_id=grant_id))
        frozen.shift(timedelta(minutes=16))

    assert all(outcome.retry_in for outcome in outcomes), outcomes
    assert fleet.calls == [] and fleet.accounts == []
    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVING
    assert "needs an operator" in left.last_error and "made in AWS account 111111111111" in left.last_error
    assert left.sessions_end_error == "DescribeSessions:AccountChanged"  # on record for the sweep, not "none"
    log = actions(access_request)
    assert "grant.removed" not in log and log.count("grant.removal_stuck") == 1
    assert log.count("session.end_failed") == 1

    # Put back, the next attempt removes the user in the account it is in.
    AwsAccount.objects.filter(pk=world.prod.pk).update(
        account_id="111111111111", role_arn="arn:aws:iam::111111111111:role/PassportPortal"
    )
    fleet.steps.clear()
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert {account.account_id for account in fleet.accounts} == {"111111111111"}
    assert reload(access_request).aws_account_id == "111111111111"  # recorded when it was made


def _takeover(world: World, fleet: FakeFleet, frozen: Any, first_result: CommandResult) -> tuple[Any, int, Outcome]:
    """Worker A removes; its lease runs out while its Run Command is still running (a stall, or its
    renewal thread died on a database blip); worker B takes the grant over and removes it; then
    A's Run Command finishes with ``first_result``."""
    access_request, grant_id = _ending(world)

    def a_runs(**kw: Any) -> CommandResult:
        frozen.shift(timedelta(seconds=31))  # A's lease (30 s) ran out meanwhile
        assert services.grant_deprovision(grant_id=grant_id) == Outcome()  # worker B
        assert grant(grant_id).status == GrantStatus.REMOVED
        return first_result

    fleet.will(a_runs, ok("cmd-rm-B"))
    outcome_a = services.grant_deprovision(grant_id=grant_id)  # worker A
    return access_request, grant_id, outcome_a


def test_a_takeover_of_a_removal_logs_the_grant_removed_once(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, grant_id, outcome_a = _takeover(world, fleet, frozen, ok("cmd-rm-A"))

    assert outcome_a == Outcome()
    log = actions(access_request)
    assert log.count("grant.removed") == 1, log[-5:]
    assert log.count("request.completed") == 1, log[-5:]
    assert log[-1] == "grant.removal_duplicate"
    duplicate = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removal_duplicate")
    assert duplicate.detail["command_id"] == "cmd-rm-A"
    assert grant(grant_id).command_ids[-1] == "cmd-rm-B"


def test_a_late_failure_of_a_taken_over_removal_is_not_retried(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, grant_id, outcome_a = _takeover(
        world, fleet, frozen, failed(exit_code=1, command_id="cmd-rm-A", stderr="flock: timed out")
    )

    assert outcome_a == Outcome()
    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVED
    assert left.last_error == "" and left.next_attempt_at is None
    log = actions(access_request)
    assert "grant.remove_retry" not in log, log[-5:]
    assert log[-1] == "grant.removal_duplicate"


def test_a_late_result_of_a_removal_whose_lease_ran_out_untaken_still_counts(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """No other worker took the grant: the lease is still this worker's, and its result stands."""
    access_request, grant_id = _ending(world)

    def slow(**kw: Any) -> CommandResult:
        frozen.shift(timedelta(seconds=31))
        return ok("cmd-rm-slow")

    fleet.will(slow)
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert actions(access_request)[-2:] == ["grant.removed", "request.completed"]


@pytest.mark.parametrize("exit_code", [1, 3], ids=["retryable", "final"])
def test_a_late_failure_of_a_taken_over_create_leaves_the_new_attempt_alone(
    world: World, fleet: FakeFleet, frozen: Any, exit_code: int
) -> None:
    """Worker A creates; its lease runs out while its script runs and worker B claims the grant
    and starts its own create. A's failure lands meanwhile: the grant stays B's, being created,
    neither put back to wait nor failed (nor its request failed) under B's running script."""
    access_request, (grant_id,) = provisioning_request(world)
    taken: dict[str, Any] = {}

    def a_runs(**kw: Any) -> CommandResult:
        frozen.shift(timedelta(seconds=31))
        taken["until"] = lease_new_until()
        assert services.grant_claim_for_provisioning(grant_id=grant_id, lease_until=taken["until"])  # worker B
        return failed(exit_code=exit_code, command_id="cmd-create-A")

    fleet.will(a_runs)
    assert services.grant_provision(grant_id=grant_id) == Outcome()  # worker A

    left = grant(grant_id)
    assert left.status == GrantStatus.PROVISIONING
    assert left.lease_until == taken["until"]
    assert left.attempts == 2
    assert reload(access_request).status == RequestStatus.PROVISIONING
    log = actions(access_request)
    assert "grant.provision_retry" not in log and "grant.failed" not in log, log[-5:]


def test_a_late_success_of_a_taken_over_windows_create_keeps_the_new_workers_password(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """Worker A creates on Windows; its lease runs out while its script runs, and worker B claims
    the grant, stores its own password and makes the grant ready. A's success lands after: it
    settles nothing (the password the person reads stays B's, one ready entry), and its command is
    named in the Logbook."""
    access_request, (grant_id,) = provisioning_request(world, [world.windows])
    seen: dict[str, str | None] = {}

    def a_runs(**kw: Any) -> CommandResult:
        frozen.shift(timedelta(seconds=31))
        assert services.grant_provision(grant_id=grant_id) == Outcome()  # worker B
        assert grant(grant_id).status == GrantStatus.READY
        seen["b"] = unseal_password(grant(grant_id))
        return created("cmd-create-A")

    fleet.will(a_runs, created("cmd-create-B"))
    assert services.grant_provision(grant_id=grant_id) == Outcome()  # worker A

    left = grant(grant_id)
    assert left.status == GrantStatus.READY
    assert unseal_password(left) == seen["b"]
    assert left.command_ids == ["cmd-create-B"]
    log = actions(access_request)
    assert log.count("grant.ready") == 1, log[-5:]
    assert log[-1] == "grant.create_duplicate"
    duplicate = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.create_duplicate")
    assert duplicate.detail["command_id"] == "cmd-create-A"


def test_a_late_success_of_a_taken_over_create_leaves_the_new_attempt_alone(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    """As above, but A's success lands while B's create still runs: the grant stays B's, being
    created (not called ready under B's script, its request not started)."""
    access_request, (grant_id,) = provisioning_request(world, [world.windows])
    taken: dict[str, Any] = {}

    def a_runs(**kw: Any) -> CommandResult:
        frozen.shift(timedelta(seconds=31))
        taken["until"] = lease_new_until()
        assert services.grant_claim_for_provisioning(grant_id=grant_id, lease_until=taken["until"])  # worker B
        return created("cmd-create-A")

    fleet.will(a_runs)
    assert services.grant_provision(grant_id=grant_id) == Outcome()  # worker A

    left = grant(grant_id)
    assert left.status == GrantStatus.PROVISIONING
    assert left.lease_until == taken["until"]
    assert left.command_ids == []
    assert reload(access_request).status == RequestStatus.PROVISIONING
    log = actions(access_request)
    assert "grant.ready" not in log and "request.active" not in log, log[-5:]
    assert log[-1] == "grant.create_duplicate"


def test_a_late_success_of_a_create_whose_lease_ran_out_untaken_still_counts(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    access_request, (grant_id,) = provisioning_request(world)

    def slow(**kw: Any) -> CommandResult:
        frozen.shift(timedelta(seconds=31))
        return ok("cmd-create-slow")

    fleet.will(slow)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.READY
    assert "grant.ready" in actions(access_request)
