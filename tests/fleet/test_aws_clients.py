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


def test_the_sts_client_is_made_once_per_endpoint(aws: Cloud, settings: Any) -> None:
    first = clients.sts_client()
    assert clients.sts_client() is first
    assert first.meta.endpoint_url == aws.endpoint_url
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # another endpoint: its own client
    other = clients.sts_client()
    assert other is not first and other.meta.endpoint_url == "http://127.0.0.1:9"


@pytest.fixture
def fresh_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that has made no client yet (as a worker's main process before its first)."""
    monkeypatch.setattr(clients, "_session", None)
    monkeypatch.setattr(clients, "_sts_clients", {})
    monkeypatch.setattr(clients, "_clients", {})


def _model_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The botocore data files read from disk from now on."""
    from botocore.loaders import JSONFileLoader

    reads: list[str] = []
    load_file = JSONFileLoader.load_file

    def counting(self: Any, file_path: str) -> Any:
        reads.append(file_path)
        return load_file(self, file_path)

    monkeypatch.setattr(JSONFileLoader, "load_file", counting)
    return reads


@pytest.mark.usefixtures("fresh_session")
def test_after_preload_a_workers_clients_read_no_model_from_disk(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients.preload()
    reads = _model_reads(monkeypatch)
    ssm = AwsFleet(account)._client("ssm", REGION)  # assumes the role through STS, then makes the client
    AwsFleet(account)._client("ec2", REGION)
    assert reads == []
    assert _instance_ids(ssm)


@pytest.mark.usefixtures("fresh_session")
def test_without_preload_the_first_client_reads_its_models(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    """What preload saves each pool process: the same reads, once per process."""
    reads = _model_reads(monkeypatch)
    AwsFleet(account)._client("ssm", REGION)
    assert any("/ssm/" in path for path in reads) and any("/sts/" in path for path in reads)


@pytest.mark.usefixtures("fresh_session")
def test_a_workers_main_process_preloads_when_celery_starts_it(aws: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.signals import worker_init

    from workers.apps import _preload_aws_clients

    assert _preload_aws_clients in worker_init._live_receivers(sender=None)
    _preload_aws_clients(sender=None)
    reads = _model_reads(monkeypatch)
    clients.sts_client()
    assert clients._session is not None and reads == []


def test_a_failed_preload_does_not_stop_the_worker(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    from workers.apps import _preload_aws_clients

    def broken() -> None:
        raise RuntimeError("no botocore data")

    monkeypatch.setattr(clients, "preload", broken)
    _preload_aws_clients(sender=None)
    assert "could not read the AWS clients' models ahead" in caplog.text
