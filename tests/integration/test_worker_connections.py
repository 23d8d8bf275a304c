"""The real worker keeps its database connections from one task to the next.

A new PostgreSQL connection costs the server a process and its catalog caches, and the worker
the handshake: as much CPU as a small task itself. Celery's Django fixup closes every
connection before and after each task unless told otherwise; the portal tells it otherwise and
still drops a connection that failed or outlived CONN_MAX_AGE.
"""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import AwsAccount, NotificationReceipt
from requests_app import services
from requests_app.models import Instance
from requests_app.notifications import Kind
from tests.factories import make_membership, make_user
from tests.stack import WorkerProcess, wait_for
from workers.tasks import send_notification

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TASKS = 24


def _sessions_so_far() -> int:
    """Connections ever made to the test database (PostgreSQL's own count)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_tasks_reuse_the_workers_database_connections(worker: WorkerProcess, prod: AwsAccount) -> None:
    person = make_user("conn-reuse")
    make_membership(person, prod)
    instance = Instance.objects.filter(account=prod).order_by("name")[0]
    request_ids = [
        services.access_request_create(requester=person, account=prod, instances=[instance], reason="reuse").pk
        for _ in range(TASKS)
    ]
    before = _sessions_so_far()
    for request_id in request_ids:
        send_notification.delay(Kind.FAILED, request_id)
    wait_for(
        lambda: NotificationReceipt.objects.filter(kind=Kind.FAILED, request_id__in=request_ids).count() == TASKS,
        timeout=60,
        what="the worker to run every task",
    )
    new_sessions = _sessions_so_far() - before
    # A connection per task would be 24 at least. The worker's 4 threads may each open one (an
    # earlier one having aged out), and beat and this test hold their own.
    assert new_sessions <= 8, f"{new_sessions} new database connections for {TASKS} tasks"
