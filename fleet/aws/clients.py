"""boto3 clients for the fleet: one configuration, one STS client, the portal role's credentials cached.

The portal role's clients are made once per service, region and credentials, and shared by
every thread (botocore's clients are thread-safe; making one is not, and costs milliseconds
of CPU, so it happens under a lock, from one session). A client made with a person's scoped
credentials is never kept.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from fleet.interface import FleetAccount, FleetError, ScopedCredentials

# max_pool_connections: one shared client serves every worker thread at once.
_BOTO_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30, max_pool_connections=32
)


# An AWS error code as AWS spells them (``ThrottlingException``, ``AccessDenied``,
# ``InvalidInstanceId``); anything else in that place of an answer is not repeated.
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,63}")


def aws_error_code(exc: ClientError | BotoCoreError) -> str:
    """The kind of a failed call as a short name: AWS's error code, or botocore's exception class
    when AWS gave no answer (``EndpointConnectionError``, ``ReadTimeoutError``)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") if isinstance(exc.response, dict) else None
        code = error.get("Code") if isinstance(error, dict) else None
        return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else "ClientError"
    return type(exc).__name__


# The services the fleet calls: their models are what preload() reads ahead.
SERVICES = ("sts", "ssm", "ec2", "iam")

_clients_lock = threading.Lock()
_session: boto3.session.Session | None = None
# endpoint -> the process's STS client (it signs with the process's own credentials)
_sts_clients: dict[str | None, Any] = {}


def _fleet_session() -> boto3.session.Session:
    """The one session every fleet client is made from; the caller holds ``_clients_lock``."""
    global _session
    if _session is None:
        _session = boto3.session.Session()
    return _session


def sts_client() -> Any:
    """The STS client: the portal role and the scoped credentials are both assumed through it."""
    endpoint = settings.AWS_ENDPOINT_URL or None
    with _clients_lock:
        client = _sts_clients.get(endpoint)
        if client is None:
            client = _fleet_session().client(
                "sts", region_name=settings.AWS_REGION, endpoint_url=endpoint, config=_BOTO_CONFIG
            )
            _sts_clients[endpoint] = client
        return client


def preload() -> None:
    """Read botocore's models of the fleet's services now.

    Called in a Celery worker's main process before it forks its pool: each pool process then
    makes its clients from the parsed models (and endpoint rules) it inherited, instead of each
    parsing the same JSON files again, about 0.4 s of CPU per process at its first task.
    """
    with _clients_lock:
        session = _fleet_session()
        for service in SERVICES:
            # A client that is never used: making it loads what every later client of the service reads.
            session.client(
                service,
                region_name=settings.AWS_REGION,
                endpoint_url=settings.AWS_ENDPOINT_URL or None,
                # Unsigned: no credentials are looked up (on EC2 that would be a metadata call).
                config=_BOTO_CONFIG.merge(Config(signature_version=UNSIGNED)),
            )


_credentials_lock = threading.Lock()
_credentials: dict[str, tuple[dict[str, str], datetime]] = {}


def _assumed_credentials(account: FleetAccount) -> dict[str, str]:
    """Credentials for the account's portal role, cached until five minutes before they end."""
    with _credentials_lock:
        cached = _credentials.get(account.role_arn)
        if cached and cached[1] - timedelta(minutes=5) > timezone.now():
            return cached[0]
    try:
        response = sts_client().assume_role(
            RoleArn=account.role_arn, RoleSessionName="passport-portal", DurationSeconds=3600
        )
    except (ClientError, BotoCoreError) as exc:
        raise FleetError(f"Cannot assume {account.role_arn}: {exc}", code=aws_error_code(exc)) from exc
    creds = response["Credentials"]
    values = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    expiration = creds["Expiration"]
    with _credentials_lock:
        _credentials[account.role_arn] = (values, expiration)
    return values


# (role ARN, service, region, endpoint) -> (the access key id the client signs with, the client)
_clients: dict[tuple[str, str, str, str | None], tuple[str, Any]] = {}


def _new_client(service: str, region: str, credentials: dict[str, str]) -> Any:
    """A client from the fleet's own session; the caller holds ``_clients_lock``."""
    return _fleet_session().client(
        service,
        region_name=region,
        endpoint_url=settings.AWS_ENDPOINT_URL or None,
        config=_BOTO_CONFIG,
        **credentials,
    )


def _role_client(account: FleetAccount, service: str, region: str) -> Any:
    """The shared client of the account's portal role; a new one once the role's credentials change."""
    credentials = _assumed_credentials(account)
    key = (account.role_arn, service, region, settings.AWS_ENDPOINT_URL or None)
    with _clients_lock:
        cached = _clients.get(key)
        if cached is not None and cached[0] == credentials["aws_access_key_id"]:
            return cached[1]
        client = _new_client(service, region, credentials)
        _clients[key] = (credentials["aws_access_key_id"], client)
        return client


class AwsClients:
    """The boto3 clients of one AWS account: the portal's role, or scoped credentials when given."""

    def __init__(self, account: FleetAccount) -> None:
        self.account = account

    def _client(self, service: str, region: str, credentials: ScopedCredentials | None = None) -> Any:
        if credentials is None:
            return _role_client(self.account, service, region)
        with _clients_lock:
            return _new_client(service, region, credentials.client_kwargs())
