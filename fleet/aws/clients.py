"""boto3 clients for the fleet: one configuration, one STS client, the portal role's credentials cached."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from fleet.interface import FleetAccount, FleetError, ScopedCredentials

_BOTO_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)


def sts_client() -> Any:
    """The STS client: the portal role and the scoped credentials are both assumed through it."""
    return boto3.client(
        "sts", region_name=settings.AWS_REGION, endpoint_url=settings.AWS_ENDPOINT_URL or None, config=_BOTO_CONFIG
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
        raise FleetError(f"Cannot assume {account.role_arn}: {exc}") from exc
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


class AwsClients:
    """The boto3 clients of one AWS account: the portal's role, or scoped credentials when given."""

    def __init__(self, account: FleetAccount) -> None:
        self.account = account

    def _client(self, service: str, region: str, credentials: ScopedCredentials | None = None) -> Any:
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=settings.AWS_ENDPOINT_URL or None,
            config=_BOTO_CONFIG,
            **(credentials.client_kwargs() if credentials is not None else _assumed_credentials(self.account)),
        )
