"""The inventory page stays bounded at a large installation's size: 100 instances a page, instances
gone from the cloud hidden unless asked for, and a fixed number of queries however many accounts
it lists (their sync problems read once, not once per account)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import AwsAccount, User
from requests_app.models import Instance, SweepFailure
from tests.factories import make_account, make_user

pytestmark = pytest.mark.django_db

ROW = re.compile(r'<tr data-testid="inventory-instance"')


def _admin_client() -> tuple[Client, User]:
    admin = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(admin)
    return client, admin


def _instances(account: AwsAccount, count: int, *, prefix: str = "h", gone: bool = False) -> None:
    Instance.objects.bulk_create(
        [
            Instance(
                account=account,
                instance_id=f"i-{abs(hash((prefix, n))) % 16**17:017x}",
                region="us-east-1",
                name=f"{prefix}-{n:04d}",
                gone_at=timezone.now() if gone else None,
            )
            for n in range(count)
        ]
    )


def _failure(kind: str, key: str, error: str) -> None:
    now = timezone.now()
    SweepFailure.objects.create(
        kind=kind, key=key, last_error=error, first_failed_at=now, last_failed_at=now, next_attempt_at=now
    )


def test_the_inventory_shows_100_instances_a_page_with_links_to_the_others() -> None:
    account = make_account()
    _instances(account, 250)
    client, _ = _admin_client()
    first = client.get(reverse("requests:inventory")).content.decode()
    assert len(ROW.findall(first)) == 100
    assert "h-0000" in first and "h-0099" in first and "h-0100" not in first
    assert "page=2" in first and "Page 1 of 3" in first
    last = client.get(reverse("requests:inventory"), {"page": 3}).content.decode()
    assert len(ROW.findall(last)) == 50 and "h-0249" in last
    # Past the end, or not a number: the nearest page, never an error.
    assert len(ROW.findall(client.get(reverse("requests:inventory"), {"page": 99}).content.decode())) == 50
    assert client.get(reverse("requests:inventory"), {"page": "x<script>"}).status_code == 200


def test_instances_gone_from_the_cloud_are_hidden_unless_asked_for() -> None:
    account = make_account()
    _instances(account, 3, prefix="here")
    _instances(account, 2, prefix="gone", gone=True)
    client, _ = _admin_client()
    default = client.get(reverse("requests:inventory")).content.decode()
    assert len(ROW.findall(default)) == 3 and "gone-0000" not in default
    assert "Show gone instances (2)" in default
    shown = client.get(reverse("requests:inventory"), {"gone": "1"}).content.decode()
    assert len(ROW.findall(shown)) == 5 and "gone-0001" in shown
    assert "Hide gone instances" in shown
    # Paging keeps the choice.
    _instances(account, 150, prefix="more")
    shown = client.get(reverse("requests:inventory"), {"gone": "1"}).content.decode()
    assert "gone=1&amp;page=2" in shown


def _inventory_queries(client: Client, accounts: int, tag: str) -> int:
    for n in range(accounts):
        account = make_account(f"{200000000000 + accounts * 1000 + n:012d}", f"inv-{tag}-{n}")
        _failure(SweepFailure.Kind.INVENTORY, f"{account.pk}:us-east-1", f"denied {tag}-{n}")
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("requests:inventory"))
    assert response.status_code == 200
    body = response.content.decode()
    assert all(f"denied {tag}-{n}" in body for n in range(accounts))
    AwsAccount.objects.filter(name__startswith=f"inv-{tag}-").delete()
    SweepFailure.objects.all().delete()
    return len(captured.captured_queries)


def test_the_inventory_reads_sync_problems_once_whatever_the_number_of_accounts() -> None:
    client, _ = _admin_client()
    assert _inventory_queries(client, 3, "few") == _inventory_queries(client, 30, "many")


def test_each_account_shows_only_its_own_sync_problems() -> None:
    client, _ = _admin_client()
    first = make_account("300000000001", "first")
    second = make_account("300000000002", "second")
    _failure(SweepFailure.Kind.INVENTORY, f"{first.pk}:us-east-1", "first-err")
    _failure(SweepFailure.Kind.INVENTORY, f"{second.pk}:eu-west-1", "second-err")
    # Another sweep's failure keyed like an account's is not an inventory problem.
    _failure(SweepFailure.Kind.EXPIRE, f"{first.pk}:us-east-1", "other-kind")
    body = client.get(reverse("requests:inventory")).content.decode()
    problems = re.findall(r'data-testid="inventory-problem">([^<]*)<', body)
    assert len(problems) == 2
    assert "first-err" in body.split("second</strong>")[0] and "second-err" in body.split("second</strong>")[1]
    assert "other-kind" not in body
