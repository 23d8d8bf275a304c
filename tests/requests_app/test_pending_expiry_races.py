"""The expiry sweep of requests left pending (``PASSPORT_PENDING_REQUEST_HOURS``) racing a decision,
each on its own PostgreSQL connection, as two processes would.

Whichever commits first wins, and the other sees what it did: an approval that holds the row when
the wait runs out is not expired (the sweep skips the locked row, then finds it approved), and a
reject or cancel that comes while the sweep holds the row is refused once it has committed. The
race helpers are ``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from requests_app.services.lifecycle import decide, expire
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.conftest import World


@pytest.fixture(autouse=True)
def no_mail_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import tasks

    monkeypatch.setattr(tasks.send_notification, "delay", lambda *args: None)


def _pending(world: World, *, waited: timedelta) -> AccessRequest:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Disk full"
    )
    AccessRequest.objects.filter(pk=access_request.pk).update(created_at=timezone.now() - waited)
    access_request.refresh_from_db()
    return access_request


def test_an_approval_holding_the_row_as_the_wait_runs_out_is_not_expired(
    world: World, monkeypatch: pytest.MonkeyPatch, time_machine: Any
) -> None:
    access_request = _pending(world, waited=timedelta(hours=23, minutes=59))
    # The approval is held after its checks and its UPDATE, under the row lock, before its Logbook
    # entry and its commit.
    hold = Hold(decide.logbook_append)
    monkeypatch.setattr(decide, "logbook_append", hold)
    approving = Side(lambda: services.access_request_approve(access_request=access_request, approver=world.approver))
    approving.start()
    hold.wait(approving)

    # Meanwhile the wait runs out and the sweep comes round: the row is someone else's.
    time_machine.move_to(timezone.now() + timedelta(minutes=2))
    assert services.access_requests_expire_due() == 0

    hold.release.set()
    approving.finish()
    # The next round finds it approved: no longer pending, never expired.
    assert services.access_requests_expire_due() == 0
    access_request.refresh_from_db()
    assert (access_request.status, access_request.decided_by, access_request.end_reason) == (
        RequestStatus.APPROVED,
        world.approver,
        "",
    )
    assert LogbookEntry.objects.filter(request_id=access_request.pk, action="request.approved").exists()
    assert not LogbookEntry.objects.filter(request_id=access_request.pk, action="request.expired").exists()
    assert logbook_verify().intact


@pytest.mark.parametrize("decision", ["approve", "reject", "cancel"])
def test_a_decision_while_the_sweep_holds_the_row_is_refused_once_it_expired(
    world: World, monkeypatch: pytest.MonkeyPatch, decision: str
) -> None:
    access_request = _pending(world, waited=timedelta(hours=25))
    # The sweep is held after moving the request to expired, before its commit.
    hold = Hold(expire.notification_enqueue, after=True)
    monkeypatch.setattr(expire, "notification_enqueue", hold)
    sweeping = Side(services.access_requests_expire_due)
    sweeping.start()
    hold.wait(sweeping)

    stale = AccessRequest.objects.get(pk=access_request.pk)  # still pending, as the deciding process reads it
    assert stale.status == RequestStatus.PENDING
    if decision == "approve":
        deciding = Side(lambda: services.access_request_approve(access_request=stale, approver=world.approver))
    elif decision == "reject":
        deciding = Side(lambda: services.access_request_reject(access_request=stale, approver=world.approver))
    else:
        deciding = Side(lambda: services.access_request_cancel(access_request=stale, actor=world.requester))
    deciding.start()
    # Reject and cancel pass their checks on the row as committed and wait for its lock; an
    # approval is refused by the wait alone.
    wait_for_a_lock_waiter(unless_done=deciding)
    hold.release.set()

    assert sweeping.finish() == 1
    deciding.join(30)
    assert isinstance(deciding.error, RequestRuleError), deciding.error or f"{decision} went through"
    assert deciding.error.code == "conflict"
    access_request.refresh_from_db()
    assert (access_request.status, access_request.decided_at, access_request.ended_by) == (
        RequestStatus.EXPIRED,
        None,
        None,
    )
    actions = set(LogbookEntry.objects.filter(request_id=access_request.pk).values_list("action", flat=True))
    assert "request.expired" in actions
    assert not actions & {"request.approved", "request.rejected", "request.cancelled"}
    assert logbook_verify().intact
