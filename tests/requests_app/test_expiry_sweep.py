"""Revocation first: the expiry sweep skips rows another transaction holds (SKIP LOCKED, under a
lock timeout) and fans the due requests out in batches on the ``revocation`` queue, which the
provisioning tasks never use.

Committed transactions: the row is locked from a second database connection, as another
process would hold it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from passport_portal.celery import app
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus, SweepFailure
from terminal.models import TerminalSession
from terminal.services import request_group
from tests.conftest import PROVISIONING_TASKS, World
from workers import tasks


@pytest.fixture(autouse=True)
def committed(transactional_db: None) -> Iterator[None]:
    # No live sweep races these tests' own: the session's worker (and its scheduler) starts only
    # after every test that does not use it has run (tests/conftest.py orders them).
    yield
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")


@pytest.fixture(autouse=True)
def environment(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PASSPORT_IAM_CHECK = False
    settings.PASSPORT_EXPIRY_LOCK_TIMEOUT_MS = 2000
    for name in PROVISIONING_TASKS:
        monkeypatch.setattr(getattr(tasks, name), "delay", lambda *args: None)


def due_requests(world: World, count: int) -> list[int]:
    now = timezone.now()
    ids = []
    for n in range(count):
        access_request = services.access_request_create(
            requester=world.requester, account=world.prod, instances=[world.web], reason=f"Due {n}"
        )
        AccessRequest.objects.filter(pk=access_request.pk).update(
            status=RequestStatus.ACTIVE,
            activated_at=now - timedelta(hours=1),
            expires_at=now - timedelta(minutes=10) + timedelta(seconds=n),
        )
        ids.append(access_request.pk)
    return ids


class RowLocker:
    """Another transaction holding ``SELECT ... FOR UPDATE`` on one request until released."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        from django.db import connections

        try:
            with transaction.atomic():
                AccessRequest.objects.select_for_update().get(pk=self.request_id)
                self.locked.set()
                self.release.wait(30)
        finally:
            connections.close_all()

    def __enter__(self) -> RowLocker:
        self.thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)


def test_a_row_locked_by_another_transaction_does_not_block_the_sweep(world: World) -> None:
    first, second, third = due_requests(world, 3)

    with RowLocker(second):
        claimed = services.access_requests_claim_due()
        expired = services.access_requests_expire(request_ids=[first, second, third])

        # Without SKIP LOCKED the claim would wait for the lock, which is held until this block ends,
        # and fail at the 2 s lock timeout: it returned, with the locked row left out.
        assert claimed == [first, third]
        assert expired == 2  # the locked one is left for the next round, not counted as a failure
        assert not SweepFailure.objects.exists()
        assert AccessRequest.objects.get(pk=second).status == RequestStatus.ACTIVE

    # Released: the next round takes it.
    assert services.access_requests_claim_due() == [second]
    assert services.access_requests_expire_due() == 1
    statuses = set(AccessRequest.objects.filter(pk__in=[first, second, third]).values_list("status", flat=True))
    assert statuses <= {RequestStatus.COMPLETING, RequestStatus.EXPIRED}


def test_due_requests_are_fanned_out_in_batches_to_the_revocation_queue(
    world: World, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PASSPORT_EXPIRY_BATCH = 2
    ids = due_requests(world, 5)
    batches: list[list[int]] = []
    monkeypatch.setattr(tasks.expire_requests, "delay", batches.append)

    assert tasks.expire_due_requests() == 5

    assert batches == [ids[0:2], ids[2:4], ids[4:5]]  # oldest first, nothing expired by the sweep itself
    assert set(AccessRequest.objects.filter(pk__in=ids).values_list("status", flat=True)) == {RequestStatus.ACTIVE}
    # Each batch, run by a worker, ends its requests.
    assert [tasks.expire_requests(batch) for batch in batches] == [2, 2, 1]
    assert not AccessRequest.objects.filter(pk__in=ids, status=RequestStatus.ACTIVE).exists()


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("workers.tasks.expire_due_requests", "revocation"),
        ("workers.tasks.expire_requests", "revocation"),
        ("workers.tasks.deprovision_grant", "revocation"),
        ("workers.tasks.provision_grant", "celery"),
        ("workers.tasks.begin_provisioning", "celery"),
    ],
)
def test_revocation_has_its_own_queue_and_provisioning_stays_off_it(task: str, queue: str) -> None:
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_a_batch_ends_its_requests_together_as_each_alone_would(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch's set-wise path: the grants, the cleanup handed out, the open terminal told, the
    Logbook (each request's entries together, the chain whole), in a number of statements that
    does not grow with the batch."""
    removals: list[int] = []
    monkeypatch.setattr(tasks.deprovision_grant, "delay", removals.append)
    ready, untried, spare = due_requests(world, 3)
    grant = Grant.objects.get(request_id=ready)
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.READY, attempts=1, password_sealed=b"sealed")
    TerminalSession.objects.create(user=world.requester, grant=grant)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(request_group(ready), channel)

    with CaptureQueriesContext(connection) as three:
        assert services.access_requests_expire(request_ids=[ready, untried, spare]) == 3

    assert AccessRequest.objects.get(pk=ready).status == RequestStatus.COMPLETING
    assert set(AccessRequest.objects.filter(pk__in=[untried, spare]).values_list("status", flat=True)) == {
        RequestStatus.EXPIRED
    }
    grant.refresh_from_db()
    assert (grant.status, grant.password_sealed) == (GrantStatus.REMOVING, None)
    assert Grant.objects.get(request_id=untried).status == GrantStatus.REMOVED
    assert removals == [grant.pk]
    closing = async_to_sync(layer.receive)(channel)
    assert closing["type"] == "terminal.close" and "expired" in closing["reason"]
    entries = list(
        LogbookEntry.objects.filter(request_id__in=[ready, untried, spare], action__startswith="request.exp").order_by(
            "id"
        )
    )
    assert [(entry.request_id, entry.action) for entry in entries] == [
        (ready, "request.expiring"),
        (untried, "request.expiring"),
        (untried, "request.expired"),
        (spare, "request.expiring"),
        (spare, "request.expired"),
    ]
    assert entries[0].instance_ids == f" {world.web.instance_id} " and entries[0].detail == {"end_reason": "expired"}
    assert logbook_verify().intact

    more = due_requests(world, 6)
    with CaptureQueriesContext(connection) as six:
        assert services.access_requests_expire(request_ids=more) == 6
    assert len(six.captured_queries) == len(three.captured_queries)
