"""A changelist's date lookups (its date hierarchy, an admin's own fields) compare a time PostgreSQL
cannot take the admin's way, with its "?e=1" page for a wrong lookup, never a 500 (a DataError:
"time zone displacement out of range"); a time it takes filters as before."""

from __future__ import annotations

import pytest

from tests.audit.admin_forms import superuser_client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url", "lookup"),
    [
        ("/admin/terminal/terminalsession/", "started_at__gte"),
        ("/admin/accounts/apitoken/", "created_at__gte"),
        ("/admin/accounts/apitoken/", "user__date_joined__lt"),
        ("/admin/accounts/apitoken/", "created_at__range"),
    ],
)
@pytest.mark.parametrize("value", ["2026-06-01T12:00:00+20:00", "2026-06-01T12:00:00-23:59"])
def test_a_time_the_database_cannot_compare_is_the_admins_wrong_lookup(url: str, lookup: str, value: str) -> None:
    client, _ = superuser_client()
    client.raise_request_exception = False
    if lookup.endswith("__range"):
        value = f"2026-01-01T00:00:00Z,{value}"
    response = client.get(url, {lookup: value})
    assert response.status_code == 302 and response["Location"].endswith("?e=1"), response.status_code


def test_a_time_it_takes_still_filters() -> None:
    client, _ = superuser_client()
    response = client.get("/admin/accounts/apitoken/", {"created_at__gte": "2026-06-01T12:00:00+14:00"})
    assert response.status_code == 200


@pytest.mark.parametrize("value", ["2026-02-30T00:00:00", "2026-13-01T00:00:00", "2026-01-01T25:00:00"])
def test_a_date_that_does_not_exist_is_the_admins_wrong_lookup_too(value: str) -> None:
    """Well formed, no such date or hour: Django's own validation refuses it, as before the check."""
    client, _ = superuser_client()
    client.raise_request_exception = False
    response = client.get("/admin/accounts/apitoken/", {"created_at__gte": value})
    assert response.status_code == 302 and response["Location"].endswith("?e=1"), response.status_code
