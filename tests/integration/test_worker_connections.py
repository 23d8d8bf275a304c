"""The real worker keeps its database connections from one task to the next.

A new PostgreSQL connection costs the server a process and its catalog caches, and the worker
the handshake: as much CPU as a small task itself. Celery's Django fixup closes every
connection before and after each task unless told otherwise; the portal tells it otherwise and
still drops a connection that failed or outlived CONN_MAX_AGE.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from django.db import connection

from accounts.models import AwsAccount, NotificationReceipt
from requests_app import services
from requests_app.models import AccessRequest, Instance, RequestStatus
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


def _requests(prod: AwsAccount, name: str, count: int) -> list[int]:
    person = make_user(name)
    make_membership(person, prod)
    instance = Instance.objects.filter(account=prod).order_by("name")[0]
    request_ids = []
    for _ in range(count):
        request_id = services.access_request_create(
            requester=person, account=prod, instances=[instance], reason="reuse"
        ).pk
        # Ended as failed at once: the worker sends a "failed" notification only for a request that
        # failed, and one person may have only so many waiting (PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON).
        AccessRequest.objects.filter(pk=request_id).update(status=RequestStatus.FAILED)
        request_ids.append(request_id)
    return request_ids


def _notify_all(request_ids: list[int]) -> None:
    """One task per request through the real worker; returns once every one has run."""
    for request_id in request_ids:
        send_notification.delay(Kind.FAILED, request_id)
    wait_for(
        lambda: (
            NotificationReceipt.objects.filter(kind=Kind.FAILED, request_id__in=request_ids).count() == len(request_ids)
        ),
        timeout=60,
        what="the worker to run every task",
    )


def _database_client_ports(pid: int) -> set[int]:
    """The local ports of the process's TCP connections to PostgreSQL (port 5432), from /proc."""
    sockets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                sockets.add(int(target[8:-1]))
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[9]) in sockets and int(fields[2].rsplit(":", 1)[1], 16) == 5432:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_tasks_reuse_the_workers_database_connections(worker: WorkerProcess, prod: AwsAccount) -> None:
    request_ids = _requests(prod, "conn-reuse", TASKS)
    before = _sessions_so_far()
    _notify_all(request_ids)
    new_sessions = _sessions_so_far() - before
    # A connection per task would be 24 at least. The worker's 4 threads may each open one (an
    # earlier one having aged out), and beat and this test hold their own.
    assert new_sessions <= 8, f"{new_sessions} new database connections for {TASKS} tasks"


def test_a_kept_connection_the_database_dropped_is_replaced_before_the_next_task(
    worker: WorkerProcess, prod: AwsAccount
) -> None:
    """As after a database restart or failover: the next tasks run on new connections, none fails."""
    request_ids = _requests(prod, "conn-dropped", 2 * TASKS)
    _notify_all(request_ids[:TASKS])  # the worker's threads now hold connections
    assert worker.process is not None
    ports = _database_client_ports(worker.process.pid)
    log_offset = worker.log_path.stat().st_size
    assert ports, "the worker holds no database connection between tasks"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND client_port = ANY(%s)",
            [sorted(ports)],
        )
        assert cursor.fetchone()[0] == len(ports)
    _notify_all(request_ids[TASKS:])
    assert "Traceback" not in worker.log_path.read_text()[log_offset:]
