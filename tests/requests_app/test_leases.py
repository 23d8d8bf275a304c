"""Heartbeat leases on grants (requests_app.services.leases): a dead worker's claim runs out in
PASSPORT_LEASE_SECONDS and is taken over; a live one that keeps renewing is never stolen.

These run with committed transactions: the heartbeat renews from its own thread, on its own
database connection, which must see the claim the worker committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError, connection
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from fleet import CommandResult
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus
from requests_app.services import provisioning
from requests_app.services.leases import GrantLease, grant_lease_kept
from requests_app.services.provisioning import Outcome, grant_claim_for_provisioning
from tests.conftest import PROVISIONING_TASKS, World
from tests.fakes.fleet import FakeFleet, ok
from workers import tasks

LEASE_SECONDS = 1  # short, so a test can outlive it


@pytest.fixture(autouse=True)
def committed(transactional_db: None) -> Iterator[None]:
    yield
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")


@pytest.fixture(autouse=True)
def environment(settings: Any, fake_fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch) -> FakeFleet:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PASSPORT_IAM_CHECK = False
    settings.PASSPORT_LEASE_SECONDS = LEASE_SECONDS
    monkeypatch.setattr(provisioning.host_lines, "ca_trusted_public_keys", lambda: ["ssh-ed25519 AAAA passport-ca"])
    for name in PROVISIONING_TASKS:
        monkeypatch.setattr(getattr(tasks, name), "delay", lambda *args: None)
    return fake_fleet


def provisioning_grant(world: World) -> int:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch the kernel"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    return grant_id


def test_the_default_lease_and_sweep_take_a_dead_workers_claim_over_within_a_minute() -> None:
    # Ran out after the lease, found by the next sweep after that.
    assert django_settings.PASSPORT_LEASE_SECONDS + django_settings.PASSPORT_SWEEP_SECONDS <= 60
    schedule = django_settings.CELERY_BEAT_SCHEDULE["retry-stuck-grants"]["schedule"]
    assert schedule.run_every <= timedelta(seconds=django_settings.PASSPORT_SWEEP_SECONDS)


def test_a_claim_whose_heartbeat_stopped_is_taken_over_after_the_lease(world: World, fake_fleet: FakeFleet) -> None:
    grant_id = provisioning_grant(world)
    # A worker claimed it and was killed: nothing renews its lease.
    assert grant_claim_for_provisioning(
        grant_id=grant_id, lease_until=timezone.now() + timedelta(seconds=LEASE_SECONDS)
    )
    assert services.grant_provision(grant_id=grant_id) == Outcome()  # another worker, too early
    assert fake_fleet.calls == []
    assert grant_id not in services.stuck_work().to_provision

    time.sleep(LEASE_SECONDS + 0.2)

    assert grant_id in services.stuck_work().to_provision
    services.grant_provision(grant_id=grant_id)
    grant = Grant.objects.get(pk=grant_id)
    assert grant.status == GrantStatus.READY
    assert grant.attempts == 2
    assert len(fake_fleet.calls) == 1


def test_a_live_claim_that_keeps_renewing_is_not_stolen_though_its_script_outlasts_the_lease(
    world: World, fake_fleet: FakeFleet
) -> None:
    grant_id = provisioning_grant(world)
    meanwhile: list[object] = []

    def slow_script(**kw: Any) -> CommandResult:
        # Three leases long; the other workers try at every lease's end.
        for _ in range(3):
            time.sleep(LEASE_SECONDS + 0.1)
            meanwhile.append(grant_id in services.stuck_work().to_provision)
            meanwhile.append(services.grant_provision(grant_id=grant_id))
        return ok("cmd-slow")

    fake_fleet.will(slow_script)
    services.grant_provision(grant_id=grant_id)

    assert meanwhile == [False, Outcome()] * 3
    grant = Grant.objects.get(pk=grant_id)
    assert grant.status == GrantStatus.READY
    assert grant.attempts == 1
    assert len(fake_fleet.calls) == 1
    assert grant.lease_until is None  # released once the script was over
    assert AccessRequest.objects.get(pk=grant.request_id).status == "active"


def test_a_lease_taken_over_by_another_worker_is_not_renewed(world: World) -> None:
    grant_id = provisioning_grant(world)
    mine = GrantLease(grant_id, timezone.now() + timedelta(seconds=LEASE_SECONDS))
    assert grant_claim_for_provisioning(grant_id=grant_id, lease_until=mine.until)
    theirs = timezone.now() + timedelta(seconds=30)
    Grant.objects.filter(pk=grant_id).update(lease_until=theirs)  # taken over while we stalled

    with grant_lease_kept(mine):
        time.sleep(LEASE_SECONDS)

    assert mine.lost
    assert Grant.objects.get(pk=grant_id).lease_until == theirs


def test_a_kept_lease_is_renewed_in_the_background(world: World) -> None:
    grant_id = provisioning_grant(world)
    lease = GrantLease(grant_id, timezone.now() + timedelta(seconds=LEASE_SECONDS))
    assert grant_claim_for_provisioning(grant_id=grant_id, lease_until=lease.until)
    first = lease.until

    with grant_lease_kept(lease):
        time.sleep(LEASE_SECONDS * 1.5)

    assert lease.renewals >= 3
    assert not lease.lost
    assert lease.until > first
    assert Grant.objects.get(pk=grant_id).lease_until == lease.until


def _soon(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _taken_over(grant_id: int) -> bool:
    """What the resume sweep (a second worker) does once a claim has run out."""
    return grant_claim_for_provisioning(
        grant_id=grant_id, lease_until=timezone.now() + timedelta(seconds=LEASE_SECONDS)
    )


def test_a_renewal_whose_connection_the_server_reset_is_tried_again_and_the_claim_kept(world: World) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    grant_id = provisioning_grant(world)
    lease = GrantLease(grant_id, timezone.now() + timedelta(seconds=LEASE_SECONDS))
    assert grant_claim_for_provisioning(grant_id=grant_id, lease_until=lease.until)

    with grant_lease_kept(lease):  # the worker's script runs on for three leases
        _soon(lambda: lease.renewals >= 1)
        with connection.cursor() as cursor:  # a failover: the renewal thread's session is gone
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            assert cursor.fetchall()
        renewed_before = lease.renewals
        time.sleep(LEASE_SECONDS * 3)
        taken_over = _taken_over(grant_id)

    assert not taken_over, "a live worker's grant was claimed by a second worker after one failed renewal"
    assert lease.renewals > renewed_before + 1
    assert not lease.lost
    assert Grant.objects.get(pk=grant_id).lease_until == lease.until


def test_a_renewal_whose_answer_was_lost_after_it_was_written_still_counts_the_claim_as_ours(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant_id = provisioning_grant(world)
    lease = GrantLease(grant_id, timezone.now() + timedelta(seconds=LEASE_SECONDS))
    assert grant_claim_for_provisioning(grant_id=grant_id, lease_until=lease.until)
    answers_lost = threading.Event()
    answers_lost.set()
    execute = CursorWrapper.execute

    def written_then_cut_off(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        result = execute(self, sql, params)  # committed (autocommit) ...
        renewal = threading.current_thread().name.startswith("lease-grant") and sql.startswith("UPDATE")
        if renewal and answers_lost.is_set():
            raise OperationalError("server closed the connection unexpectedly")  # ... but never answered
        return result

    monkeypatch.setattr(CursorWrapper, "execute", written_then_cut_off)

    with grant_lease_kept(lease):
        time.sleep(LEASE_SECONDS * 2)  # every renewal landed, none was confirmed
        assert not _taken_over(grant_id)
        answers_lost.clear()
        _soon(lambda: lease.renewals >= 1)  # the next one is matched on any value it may have written
        answers_lost.set()
        time.sleep(LEASE_SECONDS)
        assert not _taken_over(grant_id)
        with lease.settling():  # settled on the value now in the row, whichever renewal wrote it
            cleared = Grant.objects.filter(pk=grant_id, lease_until=lease.until).update(lease_until=None)

    assert not lease.lost
    assert cleared == 1
