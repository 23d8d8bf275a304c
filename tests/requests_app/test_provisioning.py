"""Provisioning and cleanup of grants, against a fake fleet.

``fleet_for`` is replaced by ``FakeFleet``: it answers ``run_script`` with the
``CommandResult`` or ``FleetError`` a test scripts, so Systems Manager is the only thing
faked. The Celery queue is replaced by a recorder; everything else is the real code on
the real database.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet import CommandResult, FleetError
from requests_app import services
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, Instance, RequestStatus
from requests_app.passwords import seal_password, unseal_password
from requests_app.services import provisioning
from requests_app.services.provisioning import Outcome
from sshca.services import ca_trusted_public_keys
from tests.conftest import World
from tests.factories import make_instance
from tests.fakes.fleet import FakeFleet, Step, failed, ok

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)  # PASSPORT_LEASE_SECONDS, pinned below


pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


@pytest.fixture(autouse=True)
def timings(settings: Any) -> None:
    """The lease and sweep timings these tests count with, whatever the environment says."""
    settings.PASSPORT_RUN_COMMAND_TIMEOUT = 300
    settings.PASSPORT_LEASE_SECONDS = 30
    settings.PASSPORT_SWEEP_GRACE_SECONDS = 30


def provisioning_request(
    world: World, instances: list[Instance] | None = None, **kw: Any
) -> tuple[AccessRequest, list[int]]:
    """A request approved and moved to provisioning, with the ids of the grants to provision."""
    access_request = services.access_request_create(
        requester=world.requester,
        account=world.prod,
        instances=instances or [world.web],
        reason="Patch the kernel",
        **kw,
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    grant_ids = services.access_request_begin_provisioning(request_id=access_request.pk)
    return reload(access_request), grant_ids


def active_request(world: World, instances: list[Instance] | None = None) -> tuple[AccessRequest, list[int]]:
    access_request, grant_ids = provisioning_request(world, instances)
    for grant_id in grant_ids:
        assert services.grant_provision(grant_id=grant_id) == Outcome()
    access_request = reload(access_request)
    assert access_request.status == RequestStatus.ACTIVE
    return access_request, grant_ids


def reload(access_request: AccessRequest) -> AccessRequest:
    return AccessRequest.objects.select_related("account").get(pk=access_request.pk)


def grant(grant_id: int) -> Grant:
    return Grant.objects.get(pk=grant_id)


def actions(access_request: AccessRequest) -> list[str]:
    return list(
        LogbookEntry.objects.filter(request_id=access_request.pk).order_by("id").values_list("action", flat=True)
    )


def retry_when_due(time_machine: Any, grant_id: int) -> Outcome:
    """The grant's retry, run as its task is: once its backoff (``next_attempt_at``) is over."""
    due = grant(grant_id).next_attempt_at
    if due is not None and due > timezone.now():
        time_machine.move_to(due, tick=False)
    return services.grant_provision(grant_id=grant_id)


def fail_every_attempt(fleet: FakeFleet, grant_id: int, attempts: int, time_machine: Any) -> list[Outcome]:
    fleet.will(*[FleetError("Throttled") for _ in range(attempts)])
    return [retry_when_due(time_machine, grant_id) for _ in range(attempts)]


# --- beginning ------------------------------------------------------------------------


def test_begin_provisioning_moves_an_approved_request_on_and_hands_out_its_grants(world: World) -> None:
    access_request, grant_ids = provisioning_request(world, [world.web, world.db])

    assert access_request.status == RequestStatus.PROVISIONING
    assert sorted(grant_ids) == sorted(access_request.grants.values_list("pk", flat=True))
    assert actions(access_request)[-1] == "request.provisioning"


def test_begin_provisioning_twice_logs_once(world: World) -> None:
    access_request, _ = provisioning_request(world)
    services.access_request_begin_provisioning(request_id=access_request.pk)
    assert actions(access_request).count("request.provisioning") == 1


def test_begin_provisioning_does_nothing_for_a_request_not_approved(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch"
    )
    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []
    assert reload(access_request).status == RequestStatus.PENDING


# --- provisioning: success ------------------------------------------------------------


def test_a_successful_script_makes_the_grant_ready_and_the_request_active(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    access_request, (grant_id,) = provisioning_request(world)
    fleet.will(ok("cmd-create"))

    assert services.grant_provision(grant_id=grant_id) == Outcome()

    ready = grant(grant_id)
    assert ready.status == GrantStatus.READY
    assert ready.ready_at == T0
    assert ready.attempts == 1
    assert ready.command_ids == ["cmd-create"]
    assert ready.lease_until is None
    access_request = reload(access_request)
    assert access_request.status == RequestStatus.ACTIVE
    assert access_request.activated_at == T0
    assert access_request.expires_at == T0 + timedelta(hours=1)
    assert actions(access_request)[-3:] == ["grant.provisioning", "grant.ready", "request.active"]


def test_the_ready_and_active_entries_take_the_logbooks_head_lock_once(world: World, fleet: FakeFleet) -> None:
    """Two entries, one hold of the lock every appender waits on, taken just before the commit:
    after the grant's and the request's rows have changed, not between them."""
    access_request, (grant_id,) = provisioning_request(world)
    fleet.will(ok("cmd-create"))
    with CaptureQueriesContext(connection) as queries:
        assert services.grant_provision(grant_id=grant_id) == Outcome()
    statements = [query["sql"] for query in queries.captured_queries]
    locks = [n for n, sql in enumerate(statements) if 'FROM "audit_logbookhead"' in sql and "FOR UPDATE" in sql]
    activated = next(n for n, sql in enumerate(statements) if "SET \"status\" = 'active'" in sql)
    # One lock for grant.provisioning (before the script), one for grant.ready with request.active.
    assert len(locks) == 2
    assert locks[1] > activated
    assert actions(reload(access_request))[-2:] == ["grant.ready", "request.active"]


def test_the_create_script_is_sent_to_the_grants_instance_for_its_username(world: World, fleet: FakeFleet) -> None:
    access_request, grant_ids = provisioning_request(world, [world.web, world.db])

    for grant_id in grant_ids:
        services.grant_provision(grant_id=grant_id)

    by_instance = {call["instance_id"]: call for call in fleet.calls}
    assert len(by_instance) == 2
    for grant_id in grant_ids:
        target = grant(grant_id)
        call = by_instance[target.instance.instance_id]
        assert call["region"] == target.instance.region
        assert call["platform"] == "linux"
        assert f"user='{target.username}'" in call["script"]
        assert f"grant='{target.uid}'" in call["script"]  # the removal tombstone it must respect
        assert "useradd" in call["script"]
        assert str(access_request.pk) in call["comment"]


def test_a_windows_grant_gets_a_password_the_person_can_read_and_it_is_wiped_at_the_end(
    world: World, fleet: FakeFleet
) -> None:
    access_request, (grant_id,) = provisioning_request(world, [world.windows])

    services.grant_provision(grant_id=grant_id)

    assert fleet.calls, grant(grant_id).last_error
    script = fleet.calls[0]["script"]
    assert "New-LocalUser" in script
    assert grant(grant_id).status == GrantStatus.READY
    password = unseal_password(grant(grant_id))
    assert password
    assert password not in script and base64.b64encode(password.encode()).decode() not in script
    # Handed over in Parameter Store while the script ran, under the name the script reads; gone after.
    name = f"/passport/handoff/{grant(grant_id).uid}"
    assert f"Get-SSMParameter -Name '{name}'" in script
    assert fleet.handoffs_seen[0] == {name: password}
    assert fleet.handoffs == {}

    services.access_request_complete(access_request=reload(access_request), actor=world.requester)

    assert grant(grant_id).password_sealed is None


def test_a_windows_create_after_its_request_ended_stores_no_password_and_sends_nothing(
    world: World, fleet: FakeFleet
) -> None:
    # The request ended between a worker's claim and the script: the grant is being removed.
    access_request, (grant_id,) = provisioning_request(world, [world.windows])
    assert provisioning.grant_claim_for_provisioning(
        grant_id=grant_id, lease_until=timezone.now() + timedelta(minutes=1)
    )
    services.access_request_complete(access_request=reload(access_request), actor=world.requester)
    claimed = Grant.objects.select_related("request__account", "instance").get(pk=grant_id)
    assert claimed.status == GrantStatus.REMOVING and claimed.password_sealed is None

    with pytest.raises(FleetError, match="no longer being created"):
        provisioning.common._create_script(claimed, timezone.now().date(), ca_public_keys=[])

    assert grant(grant_id).password_sealed is None
    assert fleet.handoffs == {} and fleet.calls == []


def test_a_removed_windows_grant_keeps_no_password_whatever_a_racing_create_stored(
    world: World, fleet: FakeFleet
) -> None:
    access_request, (grant_id,) = active_request(world, [world.windows])
    services.access_request_complete(access_request=reload(access_request), actor=world.requester)
    stored_meanwhile = Grant.objects.get(pk=grant_id)
    Grant.objects.filter(pk=grant_id).update(password_sealed=seal_password(stored_meanwhile, "Raced-Passw0rd!"))

    services.grant_deprovision(grant_id=grant_id)

    assert grant(grant_id).status == GrantStatus.REMOVED
    assert grant(grant_id).password_sealed is None


def test_every_windows_attempt_gets_a_fresh_password(world: World, fleet: FakeFleet, time_machine: Any) -> None:
    _, (grant_id,) = provisioning_request(world, [world.windows])
    fleet.will(FleetError("Throttling"))
    services.grant_provision(grant_id=grant_id)
    first = unseal_password(grant(grant_id))

    retry_when_due(time_machine, grant_id)

    second = unseal_password(grant(grant_id))
    assert first and second and first != second
    assert list(fleet.handoffs_seen[-1].values()) == [second]
    assert fleet.handoffs == {}  # the failed attempt's hand-off was deleted too


def test_the_linux_user_trusts_the_portals_ca_for_its_own_grants_principal_only(
    world: World, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provisioning.host_lines, "ca_trusted_public_keys", ca_trusted_public_keys)
    _, (grant_id,) = provisioning_request(world)
    AwsAccount.objects.filter(pk=grant(grant_id).request.account_id).update(extra_forward_ports=[5432])

    services.grant_provision(grant_id=grant_id)

    encoded = re.search(r"printf '%s' '([A-Za-z0-9+/=]*)' \| base64 -d", fleet.calls[0]["script"])
    assert encoded is not None
    lines = base64.b64decode(encoded.group(1)).decode().splitlines()
    principal = f"grant-{grant(grant_id).uid}"
    trusted = ca_trusted_public_keys()
    assert trusted
    # The account's ports, and only the instance itself: ssh -L to another host is refused by sshd.
    opens = ",".join(
        f'permitopen="{host}:{port}"' for port in (22, 3389, 5432) for host in ("localhost", "127.0.0.1", "[::1]")
    )
    # Until the request's end, to the minute (its clock starts once ready: the earliest end from now).
    lines_end = grant(grant_id).key_expires_at
    assert lines_end is not None and lines_end.second == 0
    expiry = f'expiry-time="{lines_end:%Y%m%d%H%M}Z"'
    options = f'cert-authority,principals="{principal}",{expiry},{opens},permitlisten="localhost:1"'
    assert lines == [f"{options} {' '.join(key.split()[:2])}" for key in trusted]


def test_grants_made_before_certificates_named_the_grant_get_their_bound_line(world: World, fleet: FakeFleet) -> None:
    """On upgrade, hosts of live grants still trust the person's username: each is rewritten once."""
    _, (grant_id,) = active_request(world)
    assert grant(grant_id).keys_bound
    assert services.grants_needing_key_refresh(unbound_only=True) == []
    Grant.objects.filter(pk=grant_id).update(keys_bound=False)  # as the migration leaves earlier grants
    fleet.will(failed(exit_code=1, command_id="cmd-down"))

    assert services.grants_needing_key_refresh(unbound_only=True) == [grant_id]
    assert services.grant_refresh_authorized_keys(grant_id=grant_id).retry_in is not None
    assert not grant(grant_id).keys_bound  # failed: tried again
    assert services.grant_refresh_authorized_keys(grant_id=grant_id) == Outcome()

    assert grant(grant_id).keys_bound
    assert (
        f"grant-{grant(grant_id).uid}"
        in base64.b64decode(
            re.search(r"printf '%s' '([A-Za-z0-9+/=]*)' \| base64 -d", fleet.calls[-1]["script"]).group(1)  # type: ignore[union-attr]
        ).decode()
    )
    assert services.grants_needing_key_refresh(unbound_only=True) == []


def _lines_sent(fleet: FakeFleet) -> str:
    encoded = re.search(r"printf '%s' '([A-Za-z0-9+/=]*)' \| base64 -d", fleet.calls[-1]["script"])
    assert encoded is not None
    return base64.b64decode(encoded.group(1)).decode()


def test_a_change_of_the_accounts_ports_rewrites_the_lines_of_its_live_grants(world: World, fleet: FakeFleet) -> None:
    """The permitopen options of a live grant follow the account: a port the admin closes is closed
    at sshd too (within the periodic task's five minutes), not only at the portal's proxy."""
    AwsAccount.objects.filter(pk=world.prod.pk).update(extra_forward_ports=[5432])
    _, (grant_id,) = active_request(world)
    assert 'permitopen="localhost:5432"' in _lines_sent(fleet)
    assert grant(grant_id).key_forward_ports == [5432]
    assert services.grants_needing_key_refresh(unbound_only=True) == []

    AwsAccount.objects.filter(pk=world.prod.pk).update(extra_forward_ports=[8443])

    assert services.grants_needing_key_refresh(unbound_only=True) == [grant_id]
    assert services.grant_refresh_authorized_keys(grant_id=grant_id) == Outcome()
    lines = _lines_sent(fleet)
    assert 'permitopen="localhost:8443"' in lines and ":5432" not in lines
    assert grant(grant_id).key_forward_ports == [8443]
    assert services.grants_needing_key_refresh(unbound_only=True) == []


def test_the_lines_reach_the_requests_destinations_and_an_account_change_narrows_them_never_widens(
    world: World, fleet: FakeFleet
) -> None:
    """The destinations recorded with the request, as long as the account still lists them: an
    admin's addition reaches no live request; a removal closes the destination at sshd too."""
    AwsAccount.objects.filter(pk=world.prod.pk).update(forward_destinations=["db.internal:5432"])
    _, (grant_id,) = active_request(world)
    assert 'permitopen="db.internal:5432"' in _lines_sent(fleet)
    assert grant(grant_id).key_forward_destinations == ["db.internal:5432"]
    assert services.grants_needing_key_refresh(unbound_only=True) == []

    AwsAccount.objects.filter(pk=world.prod.pk).update(forward_destinations=["db.internal:5432", "other.internal:22"])

    assert services.grants_needing_key_refresh(unbound_only=True) == [grant_id]
    assert services.grant_refresh_authorized_keys(grant_id=grant_id) == Outcome()
    lines = _lines_sent(fleet)
    assert 'permitopen="db.internal:5432"' in lines and "other.internal" not in lines
    assert services.grants_needing_key_refresh(unbound_only=True) == []

    AwsAccount.objects.filter(pk=world.prod.pk).update(forward_destinations=["other.internal:22"])

    assert services.grants_needing_key_refresh(unbound_only=True) == [grant_id]
    assert services.grant_refresh_authorized_keys(grant_id=grant_id) == Outcome()
    lines = _lines_sent(fleet)
    assert "db.internal" not in lines and "other.internal" not in lines
    assert 'permitopen="localhost:22"' in lines
    assert services.grants_needing_key_refresh(unbound_only=True) == []


def test_grants_whose_lines_predate_limited_forwards_get_them(world: World, fleet: FakeFleet) -> None:
    """On upgrade, hosts of live grants have lines that forward anywhere: each is rewritten once."""
    _, (grant_id,) = active_request(world)
    Grant.objects.filter(pk=grant_id).update(key_forward_ports=None)  # as the migration leaves them

    assert services.grants_needing_key_refresh(unbound_only=True) == [grant_id]
    assert services.grant_refresh_authorized_keys(grant_id=grant_id) == Outcome()

    assert 'permitlisten="localhost:1"' in _lines_sent(fleet)
    assert services.grants_needing_key_refresh(unbound_only=True) == []


def test_a_grant_on_a_domain_controller_is_created_in_the_directory(world: World, fleet: FakeFleet) -> None:
    dc = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    _, (grant_id,) = provisioning_request(world, [dc])

    services.grant_provision(grant_id=grant_id)

    assert fleet.calls, grant(grant_id).last_error
    script = fleet.calls[0]["script"]
    assert "New-ADUser" in script and "New-LocalUser" not in script


def test_a_grant_on_a_domain_controller_is_removed_from_the_directory(world: World, fleet: FakeFleet) -> None:
    dc = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    _, (grant_id,) = provisioning_request(world, [dc])
    Grant.objects.filter(pk=grant_id).update(status=GrantStatus.REMOVING)  # as after a completion

    services.grant_deprovision(grant_id=grant_id)

    assert "if (('yes' -eq 'yes') -or $onDomainController)" in fleet.calls[0]["script"]


@pytest.mark.parametrize(("admin_rights", "flag"), [(True, "yes"), (False, "no")])
def test_the_create_script_gives_sudo_only_when_the_request_asked_for_admin_rights(
    world: World, fleet: FakeFleet, admin_rights: bool, flag: str
) -> None:
    _, (grant_id,) = provisioning_request(world, admin_rights=admin_rights)
    services.grant_provision(grant_id=grant_id)
    assert f"if [ '{flag}' = yes ]" in fleet.calls[0]["script"]


@pytest.mark.parametrize("admin_rights", [True, False])
@pytest.mark.parametrize(
    ("domain_controller", "grants_admin"),
    [(False, "Add-LocalGroupMember -SID $administrators"), (True, "Add-ADGroupMember -Identity $domainAdmins")],
)
def test_the_windows_create_script_gives_administrators_only_when_the_request_asked_for_admin_rights(
    world: World, fleet: FakeFleet, admin_rights: bool, domain_controller: bool, grants_admin: str
) -> None:
    instance = (
        make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
        if domain_controller
        else world.windows
    )
    _, (grant_id,) = provisioning_request(world, [instance], admin_rights=admin_rights)

    services.grant_provision(grant_id=grant_id)

    script = fleet.calls[0]["script"]
    assert (grants_admin in script) is admin_rights
    assert ("Remote Desktop" in script) and ("S-1-5-32-555" in script)


def test_a_second_ready_grant_does_not_move_the_clock(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, (first, second) = provisioning_request(world, [world.web, world.db])
    services.grant_provision(grant_id=first)
    frozen.shift(timedelta(minutes=10))

    services.grant_provision(grant_id=second)

    access_request = reload(access_request)
    assert access_request.activated_at == T0
    assert access_request.expires_at == T0 + timedelta(hours=1)
    assert actions(access_request).count("request.active") == 1
    assert actions(access_request).count("grant.ready") == 2


# --- provisioning: the claim ----------------------------------------------------------


def test_a_grant_is_claimed_by_one_worker_at_a_time(world: World, fleet: FakeFleet) -> None:
    _, (grant_id,) = provisioning_request(world)
    while_running: list[Outcome] = []

    def duplicate_task_meanwhile(**kw: Any) -> CommandResult:
        while_running.append(services.grant_provision(grant_id=grant_id))
        return ok()

    fleet.will(duplicate_task_meanwhile)
    services.grant_provision(grant_id=grant_id)

    assert while_running == [Outcome()]
    assert len(fleet.calls) == 1
    assert grant(grant_id).attempts == 1
    assert grant(grant_id).status == GrantStatus.READY


def test_a_grant_leased_to_another_worker_is_left_alone(world: World, fleet: FakeFleet) -> None:
    _, (grant_id,) = provisioning_request(world)
    Grant.objects.filter(pk=grant_id).update(
        status=GrantStatus.PROVISIONING, attempts=1, lease_until=timezone.now() + timedelta(seconds=5)
    )

    assert services.grant_provision(grant_id=grant_id) == Outcome()

    assert fleet.calls == []
    assert grant(grant_id).attempts == 1
    assert grant(grant_id).status == GrantStatus.PROVISIONING


def test_a_grant_whose_lease_ran_out_is_claimed_again(world: World, fleet: FakeFleet) -> None:
    _, (grant_id,) = provisioning_request(world)
    # A worker was killed mid-script: its lease stayed behind and ran out.
    Grant.objects.filter(pk=grant_id).update(
        status=GrantStatus.PROVISIONING, attempts=1, lease_until=timezone.now() - timedelta(seconds=1)
    )

    services.grant_provision(grant_id=grant_id)

    assert len(fleet.calls) == 1
    assert grant(grant_id).attempts == 2
    assert grant(grant_id).status == GrantStatus.READY


def test_a_ready_grant_is_not_provisioned_again(world: World, fleet: FakeFleet) -> None:
    _, (grant_id,) = active_request(world)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    assert len(fleet.calls) == 1
    assert grant(grant_id).attempts == 1


def test_nothing_is_provisioned_before_the_request_moved_to_provisioning(world: World, fleet: FakeFleet) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)

    assert services.grant_provision(grant_id=access_request.grants.get().pk) == Outcome()

    assert fleet.calls == []
    assert access_request.grants.get().status == GrantStatus.PENDING


def test_nothing_is_provisioned_for_a_request_that_ended(world: World, fleet: FakeFleet) -> None:
    access_request, (grant_id,) = provisioning_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)

    assert services.grant_provision(grant_id=grant_id) == Outcome()

    assert fleet.calls == []
    assert reload(access_request).status == RequestStatus.COMPLETED


# --- provisioning: failure ------------------------------------------------------------


def test_a_failed_attempt_is_retried_with_backoff(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, (grant_id,) = provisioning_request(world)
    fleet.will(FleetError("SendCommand to i-1 failed: Throttling"))

    outcome = services.grant_provision(grant_id=grant_id)

    assert outcome == Outcome(retry_in=5)
    waiting = grant(grant_id)
    assert waiting.status == GrantStatus.PENDING
    assert waiting.attempts == 1
    assert "Throttling" in waiting.last_error
    assert waiting.next_attempt_at == T0 + timedelta(seconds=5)
    assert waiting.lease_until is None
    assert reload(access_request).status == RequestStatus.PROVISIONING
    entry = LogbookEntry.objects.filter(request_id=access_request.pk).order_by("id").last()
    assert entry is not None
    assert entry.action == "grant.provision_retry"
    assert entry.detail["retry_in_seconds"] == 5


def test_a_failed_script_is_retried_and_its_command_id_kept(world: World, fleet: FakeFleet, time_machine: Any) -> None:
    _, (grant_id,) = provisioning_request(world)
    fleet.will(failed(exit_code=1, command_id="cmd-a"), failed(exit_code=4, command_id="cmd-b"))

    first = services.grant_provision(grant_id=grant_id)
    second = retry_when_due(time_machine, grant_id)

    assert (first, second) == (Outcome(retry_in=5), Outcome(retry_in=10))
    waiting = grant(grant_id)
    assert waiting.command_ids == ["cmd-a", "cmd-b"]
    assert "exit 4" in waiting.last_error
    assert waiting.attempts == 2


def test_the_backoff_doubles_up_to_five_minutes(
    world: World, fleet: FakeFleet, settings: Any, time_machine: Any
) -> None:
    settings.PASSPORT_GRANT_MAX_ATTEMPTS = 10
    _, (grant_id,) = provisioning_request(world)
    outcomes = fail_every_attempt(fleet, grant_id, 8, time_machine)
    assert [outcome.retry_in for outcome in outcomes] == [5, 10, 20, 40, 80, 160, 300, 300]


def test_a_grant_fails_after_the_last_allowed_attempt(
    world: World,
    fleet: FakeFleet,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    queued: list[tuple[str, int]],
    time_machine: Any,
) -> None:
    settings.PASSPORT_GRANT_MAX_ATTEMPTS = 3
    access_request, (grant_id,) = provisioning_request(world)

    with django_capture_on_commit_callbacks(execute=True):
        outcomes = fail_every_attempt(fleet, grant_id, 3, time_machine)

    assert outcomes == [Outcome(retry_in=5), Outcome(retry_in=10), Outcome()]
    assert grant(grant_id).attempts == 3
    assert "grant.failed" in actions(access_request)
    # Its only grant failed, so the request failed; whatever the script left is removed.
    access_request = reload(access_request)
    assert access_request.status == RequestStatus.FAILED
    assert access_request.end_reason == EndReason.FAILED
    assert grant(grant_id).status == GrantStatus.REMOVING
    assert queued == [("deprovision_grant", grant_id)]


def test_the_default_attempt_limit_is_five(world: World, fleet: FakeFleet, time_machine: Any) -> None:
    _, (grant_id,) = provisioning_request(world)
    outcomes = fail_every_attempt(fleet, grant_id, 5, time_machine)
    assert [outcome.retry_in for outcome in outcomes] == [5, 10, 20, 40, None]


@pytest.mark.parametrize(
    "step",
    [
        failed(exit_code=3, stderr="refusing: rs-x exists and is not a Passport user"),
        failed(exit_code=6, stderr="refusing: grant was already removed from this host"),
        FleetError("InvalidInstanceId", retryable=False),
    ],
    ids=["name-collision-exit-3", "removed-meanwhile-exit-6", "fleet-error-not-retryable"],
)
def test_a_failure_retrying_cannot_fix_fails_the_grant_at_once(world: World, fleet: FakeFleet, step: Step) -> None:
    access_request, (first, second) = provisioning_request(world, [world.web, world.db])
    fleet.will(step)

    assert services.grant_provision(grant_id=first) == Outcome()

    failed_grant = grant(first)
    assert failed_grant.status == GrantStatus.FAILED
    assert failed_grant.attempts == 1
    assert failed_grant.last_error
    # The other grant is still to come, so the request goes on.
    assert reload(access_request).status == RequestStatus.PROVISIONING
    assert grant(second).status == GrantStatus.PENDING


def test_a_request_fails_when_every_grant_failed_and_its_grants_are_queued_for_removal(
    world: World, fleet: FakeFleet, django_capture_on_commit_callbacks: Any, queued: list[tuple[str, int]]
) -> None:
    access_request, (first, second) = provisioning_request(world, [world.web, world.db])
    fleet.will(failed(exit_code=3), failed(exit_code=3))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.grant_provision(grant_id=first)
        assert reload(access_request).status == RequestStatus.PROVISIONING
        assert grant(first).status == GrantStatus.FAILED
        services.grant_provision(grant_id=second)
        assert queued == []

    access_request = reload(access_request)
    assert access_request.status == RequestStatus.FAILED
    assert access_request.ended_at is not None
    assert {grant(first).status, grant(second).status} == {GrantStatus.REMOVING}
    for callback in callbacks:
        callback()
    assert sorted(queued) == sorted([("deprovision_grant", first), ("deprovision_grant", second)])
    assert actions(access_request)[-1] == "request.failed"


def test_a_request_with_a_ready_grant_stays_active_when_another_grant_fails(world: World, fleet: FakeFleet) -> None:
    access_request, (first, second) = provisioning_request(world, [world.web, world.db])
    fleet.will(ok(), failed(exit_code=3))

    services.grant_provision(grant_id=first)
    services.grant_provision(grant_id=second)

    assert reload(access_request).status == RequestStatus.ACTIVE
    assert grant(second).status == GrantStatus.FAILED


def test_a_failed_grant_is_cleaned_up_when_the_request_is_completed(world: World, fleet: FakeFleet) -> None:
    access_request, (first, second) = provisioning_request(world, [world.web, world.db])
    fleet.will(ok(), failed(exit_code=3))
    services.grant_provision(grant_id=first)
    services.grant_provision(grant_id=second)

    services.access_request_complete(access_request=reload(access_request), actor=world.requester)

    assert {grant(first).status, grant(second).status} == {GrantStatus.REMOVING}


def test_completing_cleans_up_an_instance_whose_attempt_failed_and_awaits_a_retry(
    world: World, fleet: FakeFleet
) -> None:
    access_request, (first, second) = provisioning_request(world, [world.web, world.db])
    fleet.will(ok(), FleetError("Run Command cmd-9 on i-2 did not finish within 330 s"))
    services.grant_provision(grant_id=first)
    assert services.grant_provision(grant_id=second) == Outcome(retry_in=5)  # the script may have run

    services.access_request_complete(access_request=reload(access_request), actor=world.requester)

    assert grant(second).status == GrantStatus.REMOVING


# --- completion while provisioning, and cleanup ---------------------------------------


def test_completing_while_a_script_runs_waits_for_it_before_removing(world: World, fleet: FakeFleet) -> None:
    access_request, (grant_id,) = provisioning_request(world)
    meanwhile: list[Outcome] = []

    def completed_meanwhile(**kw: Any) -> CommandResult:
        services.access_request_complete(access_request=reload(access_request), actor=world.requester)
        assert grant(grant_id).status == GrantStatus.REMOVING
        meanwhile.append(services.grant_deprovision(grant_id=grant_id))
        return ok("cmd-create")

    fleet.will(completed_meanwhile)
    services.grant_provision(grant_id=grant_id)

    assert meanwhile == [Outcome(retry_in=5)]  # the lease was held: removal must wait
    assert len(fleet.calls) == 1  # no removal script was sent during the create
    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVING  # not ready: the request ended
    assert left.command_ids == ["cmd-create"]
    assert left.lease_until is None
    access_request = reload(access_request)
    assert access_request.status == RequestStatus.COMPLETING
    assert access_request.activated_at is None
    assert "grant.ready" not in actions(access_request)

    assert services.grant_deprovision(grant_id=grant_id) == Outcome()

    assert "userdel" in fleet.calls[-1]["script"]
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert reload(access_request).status == RequestStatus.COMPLETED


def test_removal_completes_the_request_once_every_grant_is_removed(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, (first, second) = active_request(world, [world.web, world.db])
    services.access_request_complete(access_request=access_request, actor=world.requester)
    fleet.will(ok("cmd-rm-1"), ok("cmd-rm-2"))

    assert services.grant_deprovision(grant_id=first) == Outcome()
    assert reload(access_request).status == RequestStatus.COMPLETING
    assert services.grant_deprovision(grant_id=second) == Outcome()

    removed = grant(first)
    assert removed.status == GrantStatus.REMOVED
    assert removed.removed_at == T0
    assert removed.cleanup_attempts == 1
    assert removed.command_ids[-1] == "cmd-rm-1"
    removal = fleet.calls[-2]
    assert removal["instance_id"] == world.web.instance_id
    assert "userdel" in removal["script"]
    assert f"user='{removed.username}'" in removal["script"]
    # The removal leaves the grant's tombstone, so a create still queued for it cannot run later.
    assert f"grant='{removed.uid}'" in removal["script"]
    assert reload(access_request).status == RequestStatus.COMPLETED
    assert actions(access_request)[-3:] == ["grant.removed", "grant.removed", "request.completed"]


def test_removal_after_expiry_ends_the_request_expired(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, (grant_id,) = active_request(world)
    frozen.move_to(T0 + timedelta(hours=1), tick=False)
    assert services.access_request_expire(access_request=access_request) is True

    services.grant_deprovision(grant_id=grant_id)

    access_request = reload(access_request)
    assert access_request.status == RequestStatus.EXPIRED
    assert access_request.end_reason == EndReason.EXPIRED
    assert actions(access_request)[-1] == "request.expired"


def test_a_failed_removal_is_retried_and_the_grant_stays_removing(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    fleet.will(
        failed(exit_code=4, command_id="cmd-rm-1", stderr="passport: rs-x still present"),
        FleetError("GetCommandInvocation cmd-rm-2 failed: timeout"),
    )

    first = services.grant_deprovision(grant_id=grant_id)

    assert first == Outcome(retry_in=5)
    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVING
    assert "still present" in left.last_error
    assert left.cleanup_attempts == 1
    assert left.lease_until is None
    assert left.next_attempt_at == T0 + timedelta(seconds=5)
    assert left.command_ids[-1] == "cmd-rm-1"
    assert reload(access_request).status == RequestStatus.COMPLETING
    assert actions(access_request)[-1] == "grant.remove_retry"

    # Each retry at its time (one earlier runs nothing: tests/requests_app/test_removal_backoff.py).
    frozen.shift(timedelta(seconds=5))
    assert services.grant_deprovision(grant_id=grant_id) == Outcome(retry_in=10)
    assert "timeout" in grant(grant_id).last_error

    frozen.shift(timedelta(seconds=10))
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert grant(grant_id).last_error == ""
    assert reload(access_request).status == RequestStatus.COMPLETED


def test_a_provisioning_error_stays_visible_after_cleanup(world: World, fleet: FakeFleet) -> None:
    _, (grant_id,) = provisioning_request(world)
    fleet.will(failed(exit_code=3, stderr="refusing: rs-x exists and is not a Passport user"))
    services.grant_provision(grant_id=grant_id)

    services.grant_deprovision(grant_id=grant_id)

    assert grant(grant_id).status == GrantStatus.REMOVED
    assert "is not a Passport user" in grant(grant_id).last_error


def test_a_grant_not_marked_for_removal_is_not_removed(world: World, fleet: FakeFleet) -> None:
    _, (grant_id,) = active_request(world)
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert len(fleet.calls) == 1  # only the create
    assert grant(grant_id).status == GrantStatus.READY


def test_a_failed_requests_grants_are_removed_and_it_stays_failed(world: World, fleet: FakeFleet) -> None:
    access_request, (grant_id,) = provisioning_request(world)
    fleet.will(failed(exit_code=3))
    services.grant_provision(grant_id=grant_id)

    services.grant_deprovision(grant_id=grant_id)

    assert grant(grant_id).status == GrantStatus.REMOVED
    assert reload(access_request).status == RequestStatus.FAILED


def test_every_step_of_a_request_is_in_the_logbook(world: World, fleet: FakeFleet) -> None:
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    services.grant_deprovision(grant_id=grant_id)

    assert actions(access_request) == [
        "request.created",
        "request.approved",
        "request.provisioning",
        "grant.provisioning",
        "grant.ready",
        "request.active",
        "request.completing",
        "grant.removed",
        "request.completed",
    ]
    ready = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.ready")
    assert ready.instance_id_list == [world.web.instance_id]
    assert ready.detail["username"] == grant(grant_id).username


# --- the sweep: work whose task was lost ----------------------------------------------


def test_the_sweep_finds_an_approved_request_left_more_than_30_seconds(world: World, frozen: Any) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)

    frozen.move_to(T0 + timedelta(seconds=30), tick=False)
    assert services.stuck_work().approved_requests == []
    frozen.move_to(T0 + timedelta(seconds=31), tick=False)
    assert services.stuck_work().approved_requests == [access_request.pk]

    services.access_request_begin_provisioning(request_id=access_request.pk)
    assert services.stuck_work().approved_requests == []


def test_the_sweep_finds_a_provisioning_grant_whose_lease_ran_out(world: World, frozen: Any) -> None:
    _, (grant_id,) = provisioning_request(world)
    Grant.objects.filter(pk=grant_id).update(status=GrantStatus.PROVISIONING, attempts=1, lease_until=T0 + LEASE)

    frozen.move_to(T0 + LEASE, tick=False)
    assert grant_id not in services.stuck_work().to_provision
    frozen.move_to(T0 + LEASE + timedelta(seconds=1), tick=False)
    assert services.stuck_work().to_provision == [grant_id]


def test_the_sweep_finds_a_pending_grant_whose_retry_was_lost(world: World, fleet: FakeFleet, frozen: Any) -> None:
    _, (grant_id,) = provisioning_request(world)
    fleet.will(FleetError("Throttling"))
    services.grant_provision(grant_id=grant_id)  # retry due at T0 + 5 s

    frozen.move_to(T0 + timedelta(seconds=5 + 29), tick=False)
    assert services.stuck_work().to_provision == []
    frozen.move_to(T0 + timedelta(seconds=5 + 31), tick=False)
    assert services.stuck_work().to_provision == [grant_id]


def test_the_sweep_finds_a_removing_grant_not_retried(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)

    frozen.move_to(T0 + timedelta(seconds=29), tick=False)
    assert services.stuck_work().to_remove == []
    frozen.move_to(T0 + timedelta(seconds=31), tick=False)
    assert services.stuck_work().to_remove == [grant_id]


def test_the_sweep_finds_a_removal_whose_retry_was_lost(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    frozen.move_to(T0 + timedelta(minutes=10), tick=False)
    fleet.will(failed(exit_code=4))
    services.grant_deprovision(grant_id=grant_id)  # retry due 5 s later

    frozen.shift(timedelta(seconds=5 + 29))
    assert services.stuck_work().to_remove == []
    frozen.shift(timedelta(seconds=2))
    assert services.stuck_work().to_remove == [grant_id]


def test_the_sweep_leaves_removals_that_hold_a_lease(world: World, fleet: FakeFleet, frozen: Any) -> None:
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    Grant.objects.filter(pk=grant_id).update(lease_until=T0 + timedelta(hours=1))

    frozen.move_to(T0 + timedelta(minutes=5), tick=False)
    assert services.stuck_work().to_remove == []


def test_the_sweep_hands_out_no_provisioning_for_requests_that_ended(world: World, frozen: Any) -> None:
    access_request, (grant_id,) = provisioning_request(world)
    Grant.objects.filter(pk=grant_id).update(status=GrantStatus.PROVISIONING, lease_until=T0 - timedelta(seconds=1))
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.FAILED)

    frozen.move_to(T0 + timedelta(hours=1), tick=False)
    assert services.stuck_work().to_provision == []


def test_the_sweep_gives_a_grant_that_just_changed_state_its_grace(world: World, frozen: Any) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch"
    )
    frozen.move_to(T0 + timedelta(hours=1), tick=False)  # approved an hour after it was asked for
    services.access_request_approve(access_request=access_request, approver=world.approver)
    services.access_request_begin_provisioning(request_id=access_request.pk)

    frozen.shift(timedelta(seconds=1))
    assert services.stuck_work().to_provision == []


def test_an_unexpected_error_while_provisioning_is_recorded_and_retried(
    world: World, fleet: FakeFleet, frozen: Any
) -> None:
    _, (grant_id,) = provisioning_request(world)
    fleet.will(RuntimeError("boto3 could not build the SSM client"))

    assert services.grant_provision(grant_id=grant_id) == Outcome(retry_in=5)

    waiting = grant(grant_id)
    assert waiting.status == GrantStatus.PENDING
    assert "boto3 could not build the SSM client" in waiting.last_error
    frozen.move_to(T0 + timedelta(minutes=5), tick=False)
    assert services.stuck_work().to_provision == [grant_id]


def test_an_unexpected_error_while_removing_is_recorded_and_retried(world: World, fleet: FakeFleet) -> None:
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    fleet.will(RuntimeError("boto3 could not build the SSM client"))

    assert services.grant_deprovision(grant_id=grant_id) == Outcome(retry_in=5)

    left = grant(grant_id)
    assert left.status == GrantStatus.REMOVING
    assert left.lease_until is None
    assert "boto3 could not build the SSM client" in left.last_error
