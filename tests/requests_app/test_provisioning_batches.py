"""The grants of one request on Linux hosts of one region, created and removed by one Run Command.

Against the fake fleet (``run_script_batch`` answers per instance as a test scripts it); the
real scripts on real hosts through devcloud are in tests/integration/test_grant_batches.py.
Each grant of a batch must end exactly as it would have alone: its own claim, lease, Logbook
entries, retries and outcome.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.models import LogbookEntry
from fleet import FleetError
from requests_app import selectors, services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services import provisioning
from requests_app.services.provisioning import Outcome
from tests.conftest import PROVISIONING_TASKS, World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet, failed, ok
from workers import tasks

CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb0Ik1Q5lmqk7cCc8DSK7zS4Tb5lYq4TIpQKQd2SKlR passport-ca"


@pytest.fixture(autouse=True)
def environment(settings: Any, fake_fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch) -> FakeFleet:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PASSPORT_IAM_CHECK = False
    settings.PASSPORT_LEASE_SECONDS = 30
    monkeypatch.setattr(provisioning.host_lines, "ca_trusted_public_keys", lambda: [CA_KEY])
    return fake_fleet


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, float | None]]:
    """What the tasks would hand to Celery: (task, argument, countdown)."""
    recorded: list[tuple[str, Any, float | None]] = []
    for name in PROVISIONING_TASKS:
        task = getattr(tasks, name)
        monkeypatch.setattr(task, "delay", lambda arg, _name=name: recorded.append((_name, arg, None)))
        monkeypatch.setattr(
            task, "apply_async", lambda args, countdown=None, _name=name: recorded.append((_name, args[0], countdown))
        )
    return recorded


def approved(world: World, instances: list[Instance], **kw: Any) -> tuple[AccessRequest, list[int]]:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=instances, reason="Patch the kernel", **kw
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    grant_ids = services.access_request_begin_provisioning(request_id=access_request.pk)
    return access_request, sorted(grant_ids)


def status(grant_id: int) -> str:
    return Grant.objects.get(pk=grant_id).status


def actions(access_request: AccessRequest) -> list[str]:
    return list(
        LogbookEntry.objects.filter(request_id=access_request.pk).order_by("id").values_list("action", flat=True)
    )


# --- which grants go together ---------------------------------------------------------------


def test_the_linux_grants_of_one_request_go_together_and_windows_grants_alone(world: World) -> None:
    _, grant_ids = approved(world, [world.web, world.db, world.windows])
    by_instance = dict(Grant.objects.filter(pk__in=grant_ids).values_list("instance__name", "pk"))
    assert sorted(selectors.grant_batches(grant_ids)) == sorted(
        [[by_instance["web-1"], by_instance["db-1"]], [by_instance["win-1"]]]
    )


def test_grants_of_other_requests_or_regions_never_share_a_batch(world: World) -> None:
    world.prod.regions = ["us-east-1", "eu-west-1"]
    world.prod.save()
    far = make_instance(world.prod, "far-1", region="eu-west-1")
    _, first = approved(world, [world.web, far])
    _, second = approved(world, [world.db], admin_rights=True)
    batches = selectors.grant_batches(first + second)
    assert sorted(map(sorted, batches)) == sorted([[first[0]], [first[1]], [second[0]]])


def test_a_batch_holds_at_most_the_batch_size(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors.grants, "GRANT_BATCH_SIZE", 2)
    extra = make_instance(world.prod, "app-1")
    _, grant_ids = approved(world, [world.web, world.db, extra])
    assert sorted(len(batch) for batch in selectors.grant_batches(grant_ids)) == [1, 2]


def test_beginning_hands_out_one_batch_task_and_the_windows_grant_alone(
    world: World, sent: list[tuple[str, Any, float | None]]
) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web, world.db, world.windows], reason="Patch"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    sent.clear()
    tasks.begin_provisioning.run(access_request.pk)
    names = sorted((name, arg if isinstance(arg, int) else len(arg)) for name, arg, _ in sent)
    assert names == sorted(
        [("provision_grants", 2), ("provision_grant", access_request.grants.get(instance=world.windows).pk)]
    )


# --- creating together --------------------------------------------------------------------


def test_one_run_command_makes_every_grant_of_the_batch_ready(world: World, fake_fleet: FakeFleet) -> None:
    access_request, grant_ids = approved(world, [world.web, world.db])

    assert services.grants_provision(grant_ids=grant_ids) == {grant_id: Outcome() for grant_id in grant_ids}

    assert fake_fleet.calls == []  # no Run Command of its own for either grant
    (call,) = fake_fleet.batch_calls
    assert sorted(call["instance_ids"]) == sorted([world.web.instance_id, world.db.instance_id])
    for grant in Grant.objects.filter(pk__in=grant_ids).select_related("instance"):
        # Each host finds its own grant in the one script, by its instance id.
        assert f"'{grant.instance.instance_id}') grant='{grant.uid}'" in call["script"]
        assert grant.status == GrantStatus.READY and grant.lease_until is None
        assert grant.command_ids == ["cmd-batch-1"]
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE
    log = actions(access_request)
    assert log.count("grant.provisioning") == 2 and log.count("grant.ready") == 2
    assert log.count("request.active") == 1


def test_a_host_that_fails_is_retried_alone_and_the_other_is_ready(
    world: World, fake_fleet: FakeFleet, sent: list[tuple[str, Any, float | None]]
) -> None:
    _, (web_grant, db_grant) = approved(world, [world.web, world.db])
    db_instance = Grant.objects.get(pk=db_grant).instance.instance_id
    fake_fleet.will_batch({db_instance: failed(1, command_id="cmd-both")})
    sent.clear()

    tasks.provision_grants.run([web_grant, db_grant])

    assert status(web_grant) == GrantStatus.READY
    retried = Grant.objects.get(pk=db_grant)
    assert retried.status == GrantStatus.PENDING and retried.next_attempt_at is not None
    assert "useradd: cannot lock" in retried.last_error and retried.command_ids == ["cmd-both"]
    assert [(name, arg) for name, arg, _ in sent] == [("provision_grant", db_grant)]
    assert sent[0][2] == provisioning.common._backoff(1, provisioning.common.PROVISION_RETRY_CAP)


def test_a_refusal_that_another_attempt_would_not_change_fails_only_that_grant(
    world: World, fake_fleet: FakeFleet
) -> None:
    _, (web_grant, db_grant) = approved(world, [world.web, world.db])
    fake_fleet.will_batch({Grant.objects.get(pk=db_grant).instance.instance_id: failed(3)})
    outcomes = services.grants_provision(grant_ids=[web_grant, db_grant])
    assert outcomes == {web_grant: Outcome(), db_grant: Outcome()}
    assert (status(web_grant), status(db_grant)) == (GrantStatus.READY, GrantStatus.FAILED)


def test_a_run_command_that_fails_for_all_puts_every_grant_back_with_the_reason(
    world: World, fake_fleet: FakeFleet
) -> None:
    access_request, grant_ids = approved(world, [world.web, world.db])
    fake_fleet.will_batch(FleetError("SendCommand refused: ThrottlingException"))
    outcomes = services.grants_provision(grant_ids=grant_ids)
    assert all(outcome.retry_in for outcome in outcomes.values())
    for grant in Grant.objects.filter(pk__in=grant_ids):
        assert grant.status == GrantStatus.PENDING and grant.lease_until is None
        assert "ThrottlingException" in grant.last_error
    assert actions(access_request).count("grant.provision_retry") == 2


def test_a_grant_another_worker_holds_is_left_out_of_the_script(world: World, fake_fleet: FakeFleet) -> None:
    _, (web_grant, db_grant) = approved(world, [world.web, world.db])
    held_until = timezone.now() + timedelta(seconds=30)
    Grant.objects.filter(pk=db_grant).update(status=GrantStatus.PROVISIONING, lease_until=held_until)

    services.grants_provision(grant_ids=[web_grant, db_grant])

    (call,) = fake_fleet.calls  # the one grant left goes alone, as any single grant does
    assert call["instance_id"] == Grant.objects.get(pk=web_grant).instance.instance_id
    assert fake_fleet.batch_calls == []
    held = Grant.objects.get(pk=db_grant)
    assert held.status == GrantStatus.PROVISIONING and held.lease_until == held_until


# --- removing together --------------------------------------------------------------------


def _active(world: World, fake_fleet: FakeFleet) -> tuple[AccessRequest, list[int]]:
    access_request, grant_ids = approved(world, [world.web, world.db])
    services.grants_provision(grant_ids=grant_ids)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    fake_fleet.batch_calls.clear()
    return access_request, grant_ids


def test_one_run_command_removes_every_grant_of_the_batch_and_the_request_completes(
    world: World, fake_fleet: FakeFleet
) -> None:
    access_request, grant_ids = _active(world, fake_fleet)

    assert services.grants_deprovision(grant_ids=grant_ids) == {grant_id: Outcome() for grant_id in grant_ids}

    (call,) = fake_fleet.batch_calls
    for grant in Grant.objects.filter(pk__in=grant_ids).select_related("instance"):
        assert f"'{grant.instance.instance_id}') grant='{grant.uid}'" in call["script"]
        assert grant.status == GrantStatus.REMOVED and grant.lease_until is None
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED
    assert actions(access_request).count("grant.removed") == 2


def test_a_host_whose_removal_fails_is_retried_alone_and_the_request_waits_for_it(
    world: World, fake_fleet: FakeFleet, sent: list[tuple[str, Any, float | None]], time_machine: Any
) -> None:
    access_request, (web_grant, db_grant) = _active(world, fake_fleet)
    fake_fleet.will_batch({Grant.objects.get(pk=web_grant).instance.instance_id: failed(4, stderr="still has: home")})
    sent.clear()

    tasks.deprovision_grants.run([web_grant, db_grant])

    # Both grants made their user: each host's line says so (an unmarked user there is locked, not left alone).
    script = str(fake_fleet.batch_calls[-1]["script"])
    for grant_id in (web_grant, db_grant):
        made = Grant.objects.get(pk=grant_id)
        told = f"  '{made.instance.instance_id}') grant='{made.uid}'; made_by_grant='yes'; "
        assert any(line.startswith(told) for line in script.splitlines())
    assert status(db_grant) == GrantStatus.REMOVED
    left = Grant.objects.get(pk=web_grant)
    assert left.status == GrantStatus.REMOVING and left.last_error.startswith("Cleanup: ")
    assert [(name, arg) for name, arg, _ in sent] == [("deprovision_grant", web_grant)]
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETING

    # Its own retry, alone and at its time, finishes it and the request with it.
    time_machine.move_to(left.next_attempt_at, tick=False)
    assert services.grant_deprovision(grant_id=web_grant) == Outcome()
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED


def test_grants_that_cannot_share_a_script_are_never_sent_one(world: World, fake_fleet: FakeFleet) -> None:
    """A task naming a Windows grant beside Linux ones (or grants of two requests) splits them:
    a Linux script never reaches a Windows host, nor one request's script another's hosts."""
    app = make_instance(world.prod, "app-1")
    _, grant_ids = approved(world, [world.web, world.db, world.windows])
    _, other = approved(world, [app])

    services.grants_provision(grant_ids=[*grant_ids, *other])

    (batch,) = fake_fleet.batch_calls
    assert sorted(batch["instance_ids"]) == sorted([world.web.instance_id, world.db.instance_id])
    alone = {call["instance_id"]: call["platform"] for call in fake_fleet.calls}
    assert alone == {world.windows.instance_id: "windows", app.instance_id: "linux"}
    assert all(status(grant_id) == GrantStatus.READY for grant_id in [*grant_ids, *other])

    services.access_request_complete(
        access_request=AccessRequest.objects.get(pk=Grant.objects.get(pk=grant_ids[0]).request_id),
        actor=world.requester,
    )
    fake_fleet.batch_calls.clear()
    fake_fleet.calls.clear()
    services.grants_deprovision(grant_ids=grant_ids)
    (batch,) = fake_fleet.batch_calls
    assert sorted(batch["instance_ids"]) == sorted([world.web.instance_id, world.db.instance_id])
    assert [call["instance_id"] for call in fake_fleet.calls] == [world.windows.instance_id]


def test_a_grant_is_ready_and_the_clock_running_as_soon_as_its_host_is_done(
    world: World, fake_fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow host of the batch holds up none of the others: the first host's grant is ready,
    its lease released and the request active while the second host still runs."""
    access_request, (web_grant, db_grant) = approved(world, [world.web, world.db])
    web, db = (Grant.objects.get(pk=pk).instance.instance_id for pk in (web_grant, db_grant))
    seen: dict[str, Any] = {}

    def run_script_batch(**kw: Any) -> dict[str, Any]:
        kw["on_result"](web, ok("cmd-both"))
        first = Grant.objects.get(pk=web_grant)
        seen["while the other runs"] = (
            first.status,
            first.lease_until,
            status(db_grant),
            AccessRequest.objects.get(pk=access_request.pk).status,
        )
        kw["on_result"](db, failed(1, command_id="cmd-both"))
        return {web: ok("cmd-both"), db: failed(1, command_id="cmd-both")}

    monkeypatch.setattr(fake_fleet, "run_script_batch", run_script_batch)
    outcomes = services.grants_provision(grant_ids=[web_grant, db_grant])

    assert seen["while the other runs"] == (
        GrantStatus.READY,
        None,
        GrantStatus.PROVISIONING,
        RequestStatus.ACTIVE,
    )
    assert outcomes[web_grant] == Outcome() and outcomes[db_grant].retry_in
    # Each settled once: one ready entry, one retry entry, whatever the end of the batch did.
    log = actions(access_request)
    assert log.count("grant.ready") == 1 and log.count("grant.provision_retry") == 1
    assert Grant.objects.get(pk=db_grant).lease_until is None


def test_a_removal_is_settled_as_soon_as_its_host_is_done(
    world: World, fake_fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request, (web_grant, db_grant) = _active(world, fake_fleet)
    web, db = (Grant.objects.get(pk=pk).instance.instance_id for pk in (web_grant, db_grant))
    seen: dict[str, Any] = {}

    def run_script_batch(**kw: Any) -> dict[str, Any]:
        kw["on_result"](db, failed(4, stderr="still has: home"))
        seen["after the first"] = (status(db_grant), Grant.objects.get(pk=db_grant).lease_until, status(web_grant))
        kw["on_result"](web, ok())
        return {web: ok(), db: failed(4, stderr="still has: home")}

    monkeypatch.setattr(fake_fleet, "run_script_batch", run_script_batch)
    services.grants_deprovision(grant_ids=[web_grant, db_grant])

    # The failed one carries its reason and no lease at once; the other is not yet touched.
    assert seen["after the first"] == (GrantStatus.REMOVING, None, GrantStatus.REMOVING)
    assert "still has: home" in Grant.objects.get(pk=db_grant).last_error
    assert status(web_grant) == GrantStatus.REMOVED
    assert actions(access_request).count("grant.remove_retry") == 1


def test_a_host_whose_grant_has_another_username_goes_apart(world: World) -> None:
    """A host tagged as a domain controller gets a name of its own: one script names one user."""
    _, (web_grant, db_grant) = approved(world, [world.web, world.db])
    Grant.objects.filter(pk=db_grant).update(username=Grant.objects.get(pk=web_grant).username + "-abcd")
    assert sorted(selectors.grant_batches([web_grant, db_grant])) == [[web_grant], [db_grant]]


def test_a_grant_whose_settling_fails_is_left_to_the_sweep_and_the_others_are_settled(
    world: World, fake_fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, (web_grant, db_grant) = approved(world, [world.web, world.db])
    real_settle = provisioning.settle._provision_settle

    def settle(grant: Grant, result: Any, **kw: Any) -> Outcome:
        if grant.pk == web_grant:
            raise RuntimeError("the database went away")
        return real_settle(grant, result, **kw)

    monkeypatch.setattr(provisioning.settle, "_provision_settle", settle)
    services.grants_provision(grant_ids=[web_grant, db_grant])

    ready = Grant.objects.get(pk=db_grant)
    assert ready.status == GrantStatus.READY and ready.lease_until is None
    stranded = Grant.objects.get(pk=web_grant)
    # Still claimed, under a lease nobody renews: once it runs out the sweep hands the grant out again.
    assert stranded.status == GrantStatus.PROVISIONING and stranded.lease_until is not None
    Grant.objects.filter(pk=web_grant).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert web_grant in services.stuck_work().to_provision
