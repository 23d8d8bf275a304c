"""Personas shared by every test: built once per test, named by who they are."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from accounts.models import AwsAccount, User
from requests_app.models import Instance
from tests.factories import make_account, make_instance, make_membership, make_user

# The run ends when pytest is done, even if a test left a thread running.
pytest_plugins = ["tests.plugins.no_hang"]

# The worker tasks the services hand provisioning and removal to: what unit tests record instead.
PROVISIONING_TASKS = (
    "begin_provisioning",
    "provision_grant",
    "provision_grants",
    "deprovision_grant",
    "deprovision_grants",
    "sync_grant_expiry",
    "refresh_grant_keys",
)


@dataclass
class World:
    prod: AwsAccount
    staging: AwsAccount
    requester: User  # Admin on prod: may ask for access
    member: User  # another Admin on prod
    observer: User  # Observer on prod: may not ask
    outsider: User  # no membership anywhere
    approver: User  # approves for prod
    auditor: User  # reads the Logbook
    web: Instance
    db: Instance
    legacy: Instance  # agent too old
    offline: Instance  # SSM ping lost
    unmanaged: Instance  # not managed by SSM
    windows: Instance
    stage_web: Instance  # belongs to staging


@pytest.fixture
def world(db: None) -> World:
    production = make_account()
    staging = make_account("222222222222", "Acme Staging")
    requester = make_user("alice", first_name="Alice", last_name="Admin")
    member = make_user("erin")
    observer = make_user("oscar")
    outsider = make_user("mallory")
    approver = make_user("carol")
    auditor = make_user("dave", is_auditor=True)
    make_membership(requester, production, "admin")
    make_membership(requester, staging, "admin")
    make_membership(member, production, "admin")
    make_membership(observer, production, "observer")
    make_membership(approver, production, "admin", can_approve=True)
    return World(
        prod=production,
        staging=staging,
        requester=requester,
        member=member,
        observer=observer,
        outsider=outsider,
        approver=approver,
        auditor=auditor,
        web=make_instance(production, "web-1"),
        db=make_instance(production, "db-1"),
        legacy=make_instance(production, "legacy-1", agent_version="2.3.100.0"),
        offline=make_instance(production, "offline-1", ping_status="ConnectionLost"),
        unmanaged=make_instance(production, "unmanaged-1", ssm_managed=False, ping_status="", agent_version=""),
        windows=make_instance(production, "win-1", platform=Instance.Platform.WINDOWS),
        stage_web=make_instance(staging, "stage-web-1"),
    )


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's, and before it drops the test database, the connection held in asgiref's
    thread for thread-sensitive calls closed. A test whose async code runs under asyncio.run
    rather than async_to_sync (a consumer through a communicator, terminal.threads.in_db_thread)
    has its ORM calls made in that thread, which lives as long as the process; the connection,
    kept for CONN_MAX_AGE, would keep the database in use and its drop would fail."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


# The real stack (devcloud, the Celery worker process, committed-data database access),
# defined once here so every package that uses it shares one instance per session.
# The one fake fleet for unit tests (swapped in at fleet.selection).
from tests.fakes.fleet import fake_fleet  # noqa: E402, F401
from tests.stack import aws, cloud, live_db, prod, worker  # noqa: E402, F401


def _flush_retrying_deadlocks() -> None:
    """A transactional test's teardown TRUNCATEs every table while the suite's real Celery worker and
    beat (tests/stack.py) keep running their sweeps on the same database. Their transactions take row
    locks table by table, so PostgreSQL may find a deadlock and cancel the TRUNCATE: the sweep then
    finishes and the TRUNCATE is simply tried again."""
    import time

    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                return original(self)
            except (OperationalError, CommandError) as exc:
                # flush wraps the database's error in a CommandError ("couldn't be flushed").
                if "deadlock detected" not in f"{exc} {exc.__cause__}" or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[attr-defined]


_flush_retrying_deadlocks()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that use the session's real worker run last (in their order so far).

    The worker comes with a scheduler whose sweeps (expiry, stuck grants, leases) act on every
    committed row of the test database every few seconds. Started earlier, it would race the
    transactional tests that run those services themselves (a lapsed lease taken over by the live
    sweep before the test's own call); from here on only tests built for it share the database.
    """
    items.sort(key=lambda item: "worker" in getattr(item, "fixturenames", ()))
