"""Helpers for the Logbook tests: appending entries and tampering with them behind the chain's back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from django.db import connection
from django.test import Client

from accounts.models import User
from audit.anchor.storage import evidence_bucket_ensure
from audit.models import LogbookEntry
from audit.services import logbook_append
from devcloud.server import DevCloud
from tests.audit.fixtures import SampleLogbook, build_sample_logbook
from tests.conftest import World
from tests.stack import AWS_ENV

TABLE = LogbookEntry._meta.db_table


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


@contextmanager
def trigger_disabled() -> Iterator[None]:
    """Let raw SQL change the Logbook, as an attacker with the table owner's rights could.

    The test's transaction is rolled back afterwards, so the trigger comes back with it.
    """
    if on_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")
    else:
        yield


def raw_sql(sql: str, params: list[Any] | None = None) -> None:
    with trigger_disabled(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


# Values a database writer can leave in an entry (PostgreSQL holds them) that Python cannot read
# back: json.loads refuses the number and the nesting, psycopg the times. The portal never writes one.
HUGE_NUMBER = "detail = jsonb_build_object('n', (repeat('9', 5000))::numeric)"
INFINITE_TIME = "created_at = 'infinity'"
UNREADABLE = {
    "a 5000-digit number": HUGE_NUMBER,
    "nesting past the recursion limit": "detail = (repeat('[', 3000) || repeat(']', 3000))::jsonb",
    "an infinite time": INFINITE_TIME,
    "minus infinity": "created_at = '-infinity'",
    "a time past year 9999": "created_at = '10000-01-01 00:00:00+00'",
    "a time BC": "created_at = '0044-03-15 12:00:00+00 BC'",
}


def make_unreadable(entry: LogbookEntry, change: str) -> None:
    """One of ``UNREADABLE`` (or another SET clause) written into the entry, behind the chain's back."""
    raw_sql(f"UPDATE {TABLE} SET {change} WHERE id = %s", [entry.pk])  # noqa: S608  # nosec B608


def skip_an_id() -> None:
    """Use up one entry id, as a rolled-back append would, so a forged row can take it."""
    with connection.cursor() as cursor:
        if on_postgresql():
            cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{TABLE}', 'id'))")
        else:
            cursor.execute("UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = %s", [TABLE])


def append_many(count: int, **fields: Any) -> list[LogbookEntry]:
    fields.setdefault("action", "test.event")
    fields.setdefault("actor", None)
    return [logbook_append(**{**fields, "detail": {"n": n, **fields.get("detail", {})}}) for n in range(count)]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def small_pages(settings: Any) -> int:
    settings.PASSPORT_LOGBOOK_PAGE_SIZE = 5
    return 5


@pytest.fixture
def sample(world: World) -> SampleLogbook:
    return build_sample_logbook(world)


@pytest.fixture(scope="package")
def evidence_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCloud]:
    """A devcloud for its S3 (the evidence bucket): the one this run already holds, else one of our own."""
    shared = DevCloud.running()
    if shared is not None:
        yield shared
        return
    devcloud = DevCloud(port=0, state_dir=tmp_path_factory.mktemp("evidence-devcloud")).start()
    try:
        yield devcloud
    finally:
        devcloud.stop()


@pytest.fixture
def evidence(evidence_cloud: DevCloud, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh bucket with Object Lock for this test; returns an S3 client on it."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    settings.AWS_ENDPOINT_URL = evidence_cloud.endpoint_url
    settings.PASSPORT_EVIDENCE_BUCKET = f"evidence-{uuid.uuid4().hex[:16]}"
    settings.PASSPORT_EVIDENCE_RETENTION_DAYS = 1
    assert evidence_bucket_ensure() == "created"
    return boto3.client("s3", endpoint_url=evidence_cloud.endpoint_url, region_name="us-east-1")
