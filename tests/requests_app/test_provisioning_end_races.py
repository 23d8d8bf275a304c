"""A grant's provisioning settling (a worker's success, its final failure, or a worker found lost)
while its request is ended (a person completes it, an admin's change revokes it), each on its own
PostgreSQL connection, as two processes would.

An ending locks the request's row, then its grants (``ending._grants_end``). The worker settling a
grant writes the grant, then the request (active, or failed with nothing left): were it to lock them
in that order, each would wait for the other and PostgreSQL abort one (the person's click a 500, the
admin's save rolled back with its revocation). It takes the request's row first, the lock order in
``requests_app.services.lifecycle``, so one waits for the other. The race helpers are
``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import CommandResult
from requests_app import services
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, RequestStatus
from requests_app.services.leases import GrantLease
from requests_app.services.provisioning import settle
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    admin_post,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.conftest import World
from tests.factories import make_active_request


def _provisioning(world: World, *, attempts: int = 1, lease_until_in: timedelta = timedelta(minutes=5)) -> Grant:
    """Alice's request on prod, provisioning, its one grant claimed by a worker (its lease until then)."""
    access_request = make_active_request(world.requester, world.prod, world.web)
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.PROVISIONING, activated_at=None, expires_at=None
    )
    Grant.objects.filter(request=access_request).update(
        status=GrantStatus.PROVISIONING, ready_at=None, attempts=attempts, lease_until=timezone.now() + lease_until_in
    )
    return Grant.objects.select_related("request__account", "instance").get(request=access_request)


def _held(monkeypatch: pytest.MonkeyPatch) -> Hold:
    """The worker, held once it has written the grant's row (locked, uncommitted), at its Logbook entry."""
    hold = Hold(settle.grant_logbook_append)
    monkeypatch.setattr(settle, "grant_logbook_append", hold)
    return hold


def _succeeding(grant: Grant) -> Side:
    result = CommandResult(command_id="cmd-1", status="Success", exit_code=0, stdout="", stderr="")
    lease = GrantLease(grant.pk, grant.lease_until)
    expires_at = timezone.now() + timedelta(hours=1)
    return Side(
        lambda: settle._provision_succeeded(grant, result, lease=lease, expires_at=expires_at, ca_public_keys=[])
    )


def _completing(world: World, grant: Grant) -> Side:
    return Side(lambda: services.access_request_complete(access_request=grant.request, actor=world.requester))


def _race(worker: Side, hold: Hold, ending: Side) -> None:
    worker.start()
    hold.wait(worker)
    ending.start()
    wait_for_a_lock_waiter()  # the ending waits for the worker's settling
    hold.release.set()
    for side in (worker, ending):
        side.join(30)
        assert not side.is_alive(), "still running"


def test_completing_while_the_worker_settles_a_success(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    grant = _provisioning(world)
    worker, person = _succeeding(grant), _completing(world, grant)
    _race(worker, _held(monkeypatch), person)

    assert (worker.error, person.error) == (None, None)  # main: "deadlock detected" on one side
    access_request = AccessRequest.objects.get(pk=grant.request_id)
    # Active first, then completed by Alice: the grant ready, then queued for removal.
    assert (access_request.status, access_request.end_reason) == (RequestStatus.COMPLETING, EndReason.COMPLETED)
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REMOVING
    active = LogbookEntry.objects.get(action="request.active", request_id=access_request.pk)
    assert active.pk < LogbookEntry.objects.get(action="request.completing", request_id=access_request.pk).pk
    assert logbook_verify().intact


def test_an_admin_revoking_while_the_worker_settles_a_success(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    grant = _provisioning(world)
    worker, admin = _succeeding(grant), Side(admin_post(world, world.requester, role="observer"))
    _race(worker, _held(monkeypatch), admin)

    assert (worker.error, admin.error) == (None, None)
    assert admin.result == 302  # the admin's save (Alice lowered, her request revoked) went through
    access_request = AccessRequest.objects.get(pk=grant.request_id)
    assert (access_request.status, access_request.end_reason) == (RequestStatus.COMPLETING, EndReason.REVOKED)
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REMOVING
    assert logbook_verify().intact


def _refused_as_failed(person: Side, grant: Grant) -> None:
    """The request failed first (nothing left on any instance): Alice's completion is refused as a
    conflict with its state, not aborted by the database."""
    assert isinstance(person.error, RequestRuleError), person.error or "completed"
    assert person.error.code == "conflict"
    access_request = AccessRequest.objects.get(pk=grant.request_id)
    assert (access_request.status, access_request.end_reason) == (RequestStatus.FAILED, EndReason.FAILED)
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REMOVING
    assert LogbookEntry.objects.filter(action="request.failed", request_id=access_request.pk).exists()
    assert logbook_verify().intact


def test_completing_while_the_worker_settles_a_final_failure(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    grant = _provisioning(world)
    lease = GrantLease(grant.pk, grant.lease_until)
    worker = Side(lambda: settle._provision_failed(grant, "boom", lease=lease, command_id="cmd-1", retryable=False))
    person = _completing(world, grant)
    _race(worker, _held(monkeypatch), person)

    assert worker.error is None, repr(worker.error)  # main: "deadlock detected" on one side
    _refused_as_failed(person, grant)


def test_completing_while_a_lost_worker_fails_the_grant(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # The last attempt allowed, its lease run out: the next worker to look fails the grant.
    grant = _provisioning(world, attempts=settings.PASSPORT_GRANT_MAX_ATTEMPTS, lease_until_in=-timedelta(minutes=1))
    worker = Side(lambda: settle.grant_fail_if_worker_lost(grant_id=grant.pk))
    person = _completing(world, grant)
    _race(worker, _held(monkeypatch), person)

    assert (worker.error, worker.result) == (None, True)
    _refused_as_failed(person, grant)
