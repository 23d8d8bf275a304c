"""The queries over terminal sessions that run on every page view or sweep read an index, not the
whole table: the recordings list (newest first) and every read of the open sessions (the few rows
whose ``ended_at`` is empty, among the many ended ones an installation keeps).

Each test loads a few thousand sessions, runs ANALYZE, calls the project's own function, and asks
PostgreSQL for the plan of the statement that function sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from terminal import live_services, selectors, slots, sweeps
from terminal.models import RecordingState, TerminalSession
from terminal.services import iam_recheck
from tests.factories import make_account, make_membership, make_user

pytestmark = pytest.mark.django_db

SESSIONS = 6000
OPEN = 10
GRANTS = 300
TABLE = "terminal_terminalsession"


def _load() -> tuple[User, Grant]:
    """Many ended sessions, a few open ones, spread over some people and grants; statistics fresh."""
    accounts = [make_account(f"{100000000000 + n:012d}", f"acct-{n}") for n in range(3)]
    people = [make_user(f"person{n}") for n in range(10)]
    for person in people:
        for account in accounts:
            make_membership(person, account, "admin")
    instances = [
        Instance.objects.create(account=account, instance_id=f"i-{n:017x}", region="us-east-1", name=f"h{n}")
        for n, account in enumerate(accounts)
    ]
    # Most requests are long finished; the last few are active, and their sessions are the open ones.
    requests = AccessRequest.objects.bulk_create(
        [
            AccessRequest(
                requester=people[n % len(people)],
                account=accounts[n % len(accounts)],
                reason="x",
                status=RequestStatus.ACTIVE if n >= GRANTS - OPEN else RequestStatus.COMPLETED,
            )
            for n in range(GRANTS)
        ]
    )
    grants = Grant.objects.bulk_create(
        [
            Grant(
                request=request,
                instance=instances[n % len(instances)],
                username=f"pp{n}",
                platform="linux",
                status=GrantStatus.READY if request.status == RequestStatus.ACTIVE else GrantStatus.REMOVED,
            )
            for n, request in enumerate(requests)
        ]
    )
    now = timezone.now()
    TerminalSession.objects.bulk_create(
        [
            TerminalSession(
                user=people[n % len(people)],
                grant=grants[n % len(grants)],
                ended_at=None if n >= SESSIONS - OPEN else now,
                heartbeat_at=now,
                recording_state=RecordingState.RECORDING if n >= SESSIONS - OPEN else RecordingState.COMPLETE,
            )
            for n in range(SESSIONS)
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET started_at = now() - id * interval '1 minute'")  # noqa: S608  # nosec B608
        cursor.execute(f"ANALYZE {TABLE}")
    return people[0], grants[-1]


def _plans(call: Callable[[], Any]) -> list[str]:
    """The plan of each statement ``call`` sent that reads the sessions table."""
    with CaptureQueriesContext(connection) as captured:
        call()
    statements = [q["sql"] for q in captured.captured_queries if f'FROM "{TABLE}"' in q["sql"]]
    assert statements, "the call read no sessions"
    plans = []
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute("EXPLAIN " + sql)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


def _assert_no_seq_scan(plans: list[str]) -> None:
    for plan in plans:
        assert f"Seq Scan on {TABLE}" not in plan, plan


def test_recordings_list_reads_the_newest_by_index() -> None:
    _load()
    auditor = make_user("auditor", is_auditor=True)
    filters = selectors.RecordingFilters()
    plans = _plans(lambda: selectors.recording_search(user=auditor, filters=filters))
    _assert_no_seq_scan(plans)
    assert not [plan for plan in plans if f"Sort Key: {TABLE}.started_at" in plan], plans


def test_live_sessions_list_reads_only_open_sessions() -> None:
    _load()
    auditor = make_user("auditor", is_auditor=True)
    _assert_no_seq_scan(_plans(lambda: selectors.live_session_list(user=auditor)))


def test_orphan_sweep_reads_only_open_sessions() -> None:
    _load()
    later = timezone.now() + timedelta(hours=1)
    _assert_no_seq_scan(_plans(lambda: sweeps.terminals_orphaned(now=later)))


def test_iam_recheck_reads_only_open_sessions() -> None:
    _load()
    _assert_no_seq_scan(_plans(lambda: iam_recheck.open_session_pairs()))


def test_moderation_turned_on_reads_only_open_sessions() -> None:
    _, grant = _load()
    account_id = grant.request.account_id
    _assert_no_seq_scan(_plans(lambda: live_services.account_sessions_moderate(account_id=account_id)))


def test_open_session_cap_reads_only_open_sessions() -> None:
    person, grant = _load()
    _assert_no_seq_scan(_plans(lambda: slots.sessions_open(user=person, grant=grant)))
