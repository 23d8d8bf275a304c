"""The fleet's boto3 clients against devcloud: the portal role's made once and shared, a person's never kept."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from fleet.aws import AwsFleet, clients
from fleet.interface import ScopedCredentials
from tests.stack import Cloud

REGION = "us-east-1"


@dataclass(frozen=True)
class Account:
    account_id: str
    role_arn: str


@pytest.fixture
def account(aws: Cloud) -> Iterator[Account]:
    item = next(item for item in aws.manifest["accounts"] if item["name"] == "Acme Production")
    yield Account(account_id=item["id"], role_arn=item["role_arn"])
    clients._credentials.pop(item["role_arn"], None)


def _instance_ids(client: Any) -> list[str]:
    return sorted(item["InstanceId"] for item in client.describe_instance_information()["InstanceInformationList"])


def test_the_portal_roles_client_is_made_once_and_shared_by_every_thread(account: Account) -> None:
    client = AwsFleet(account)._client("ssm", REGION)
    assert AwsFleet(account)._client("ssm", REGION) is client  # another gateway, the same account
    assert AwsFleet(account)._client("ec2", REGION) is not client

    expected = _instance_ids(client)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _instance_ids(AwsFleet(account)._client("ssm", REGION)), range(32)))
    assert expected and answers == [expected] * 32


def test_renewed_role_credentials_get_a_new_client(account: Account) -> None:
    old = AwsFleet(account)._client("ssm", REGION)
    values, _ = clients._credentials[account.role_arn]
    # The cached credentials are about to end: the next use assumes the role again.
    clients._credentials[account.role_arn] = (values, timezone.now() + timedelta(minutes=1))
    new = AwsFleet(account)._client("ssm", REGION)
    renewed, _ = clients._credentials[account.role_arn]
    assert renewed["aws_access_key_id"] != values["aws_access_key_id"]
    assert new is not old
    assert AwsFleet(account)._client("ssm", REGION) is new
    assert _instance_ids(new) == _instance_ids(old)


def test_a_client_with_a_persons_scoped_credentials_is_never_kept(account: Account) -> None:
    values = clients._assumed_credentials(account)
    scoped = ScopedCredentials(
        access_key_id=values["aws_access_key_id"],
        secret_access_key=values["aws_secret_access_key"],
        session_token=values["aws_session_token"],
        expiration=timezone.now() + timedelta(hours=1),
        role_session_name="passport-r1-u1",
    )
    first = AwsFleet(account)._client("ssm", REGION, scoped)
    assert AwsFleet(account)._client("ssm", REGION, scoped) is not first
    assert first is not AwsFleet(account)._client("ssm", REGION)
    assert all(first is not client for _, client in clients._clients.values())
