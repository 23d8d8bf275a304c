"""Every request one can see, newest first (the API's "all" list): its page is read from an index
over the creation time, not by sorting all the requests an installation has kept.

A few thousand requests, ANALYZE, then PostgreSQL's plan of the statement the API itself sent."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import User
from requests_app.models import AccessRequest, RequestStatus
from tests.factories import make_account, make_user

pytestmark = pytest.mark.django_db

REQUESTS = 8000
TABLE = "requests_app_accessrequest"


def _load() -> None:
    accounts = [make_account(f"{100000000000 + n:012d}", f"acct-{n}") for n in range(3)]
    people = User.objects.bulk_create([User(username=f"p{n}", email=f"p{n}@example.test") for n in range(20)])
    AccessRequest.objects.bulk_create(
        [
            AccessRequest(
                requester=people[n % len(people)],
                account=accounts[n % len(accounts)],
                reason="x",
                status=RequestStatus.COMPLETED,
            )
            for n in range(REQUESTS)
        ],
        batch_size=4000,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET created_at = now() - id * interval '1 minute'")  # noqa: S608  # nosec B608
        cursor.execute(f"ANALYZE {TABLE}")


def test_every_request_newest_first_is_read_from_an_index() -> None:
    _load()
    client = APIClient()
    client.force_authenticate(make_user("auditor", is_auditor=True))
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/api/requests/", {"scope": "all"})
    assert response.status_code == 200 and len(response.json()["results"]) > 0
    pages = [q["sql"] for q in captured.captured_queries if f'FROM "{TABLE}"' in q["sql"] and "LIMIT" in q["sql"]]
    assert pages, "the API read no page of requests"
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + pages[0])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Seq Scan on {TABLE}" not in plan, plan
    assert f"Sort Key: {TABLE}.created_at" not in plan, plan
