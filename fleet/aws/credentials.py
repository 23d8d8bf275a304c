"""Scoped credentials: the account's role assumed with a session policy that allows one person's sessions."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from fleet.arns import document_arn, instance_arn, partition_of, session_arn
from fleet.aws.clients import AwsClients, sts_client
from fleet.interface import FleetError, ScopedCredentials
from fleet.regions import is_region
from ssmchannel.documents import SESSION_DOCUMENTS  # the only documents scoped credentials allow

# AssumeRole's DurationSeconds runs from 900 s to the role's maximum session duration, which is
# one hour unless the customer raised it (PASSPORT_ROLE_MAX_SESSION_SECONDS says so).
STS_MIN_DURATION_SECONDS = 900
DEFAULT_ROLE_MAX_SESSION_SECONDS = 3600
# AWS refuses session policies longer than this (plain text, before packing).
SESSION_POLICY_MAX_CHARS = 2048
# Both are used with fullmatch: .match with $ took a value ending in a newline.
_INSTANCE_ID = re.compile(r"(i|mi)-[0-9a-f]{8,17}")
# RoleSessionName's alphabet, without the IAM wildcards it becomes part of a resource pattern.
_ROLE_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)


def scoped_session_policy(
    *, account_id: str, instances: Sequence[tuple[str, str]], role_session_name: str, not_after: datetime
) -> str:
    """The session policy for one person's access: JSON, compact, deterministic.

    ``instances`` are ``(region, instance_id)`` pairs. It allows ssm:StartSession on exactly
    those instances with the two session documents Passport uses (and no other: with
    ``ssm:SessionDocumentAccessCheck`` a session naming no document is asked about the
    account's default document, which is not allowed), and ssm:TerminateSession on
    the sessions this role session starts: Session Manager names a role session's sessions
    ``<RoleSessionName>-<random>``, so ``session/<RoleSessionName>-*`` in the instances'
    regions and this account. (AWS's ``${aws:userid}`` idiom does not fit role sessions,
    whose user id is ``ROLEID:name``.) Every statement holds only while ``aws:CurrentTime``
    is before ``not_after``, so the credentials are worth nothing after the request ends even
    when STS's 900-second minimum keeps them alive a little longer. Nothing else is allowed:
    a session policy can only narrow the role, so every other action is denied.

    It cannot narrow the remote port: IAM has no condition key on StartSession's document
    parameters (``portNumber``), so whoever holds these credentials may reach any port of those
    instances. The account's allowed ports are enforced by the portal
    (``requests_app.services.grant_start_session``), not by this policy.
    """
    if not instances:
        raise ValueError("a scoped session policy needs at least one instance")
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError(f"{account_id!r} is not an AWS account id")
    if not _ROLE_SESSION_NAME.fullmatch(role_session_name):
        raise ValueError(f"{role_session_name!r} is not a usable RoleSessionName")
    if not_after.tzinfo is None:
        raise ValueError("not_after must be an aware datetime")
    for region, instance_id in instances:
        if not is_region(region) or not _INSTANCE_ID.fullmatch(instance_id):
            raise ValueError(f"{region}/{instance_id} is not a region and an instance id")
    regions = sorted({region for region, _ in instances})
    # One account lives in one partition: regions of two cannot be the same account's.
    if len({partition_of(region) for region in regions}) > 1:
        raise ValueError(f"{', '.join(regions)} are regions of different AWS partitions")
    # Truncated to the second: the cut-off may come a little early, never late.
    until = {"DateLessThan": {"aws:CurrentTime": not_after.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StartSessionsOnTheRequestsInstances",
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": [
                    *(
                        instance_arn(region=region, account_id=account_id, instance_id=instance_id)
                        for region, instance_id in sorted(set(instances))
                    ),
                    *(document_arn(region=region, name=name) for region in regions for name in SESSION_DOCUMENTS),
                ],
                # Without it a StartSession naming no document would be allowed on the instances
                # alone: AWS then runs the account's default document (a shell as ssm-user, not
                # the request's user, unrecorded) without asking about it.
                "Condition": {**until, "BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}},
            },
            {
                "Sid": "EndOwnSessions",
                "Effect": "Allow",
                "Action": "ssm:TerminateSession",
                "Resource": [
                    session_arn(region=region, account_id=account_id, session_id=f"{role_session_name}-*")
                    for region in regions
                ],
                "Condition": until,
            },
        ],
    }
    document = json.dumps(policy, separators=(",", ":"))
    if len(document) > SESSION_POLICY_MAX_CHARS:
        raise ValueError(
            f"the session policy for {len(instances)} instances exceeds AWS's {SESSION_POLICY_MAX_CHARS} characters"
        )
    return document


def scoped_duration_seconds(*, remaining: timedelta, maximum: int = DEFAULT_ROLE_MAX_SESSION_SECONDS) -> int:
    """AssumeRole's DurationSeconds for access that ends in ``remaining``.

    As long as the access lasts (rounded up to the second), within AWS's limits: at least 900 s
    (AssumeRole refuses less) and at most the role's maximum. When less than 900 s remain the
    credentials outlive the request by the difference; the session policy's ``aws:CurrentTime``
    cut-off is what ends them on time.
    """
    wanted = math.ceil(remaining.total_seconds())
    return max(STS_MIN_DURATION_SECONDS, min(wanted, max(maximum, STS_MIN_DURATION_SECONDS)))


class CredentialsMixin(AwsClients):
    def assume_scoped(
        self, *, instances: Sequence[tuple[str, str]], role_session_name: str, not_after: datetime
    ) -> ScopedCredentials:
        """Assume the account's role narrowed to Session Manager on ``instances`` until ``not_after``.

        See ``scoped_session_policy`` for what the credentials may do and
        ``scoped_duration_seconds`` for how long they live. Nothing is cached: each call is
        a new role session, and the secret stays in the returned object.
        """
        remaining = not_after - timezone.now()
        if remaining <= timedelta(0):
            raise FleetError("The access has already ended: no credentials for it.", retryable=False)
        try:
            policy = scoped_session_policy(
                account_id=self.account.account_id,
                instances=instances,
                role_session_name=role_session_name,
                not_after=not_after,
            )
        except ValueError as exc:
            raise FleetError(f"Cannot scope credentials: {exc}", retryable=False) from exc
        # Short by default (AWS's 15-minute minimum): STS cannot revoke a role session, so if the
        # request ends early, what was handed out dies soon after; credential_process renews them
        # while the request is active.
        maximum = min(
            getattr(settings, "PASSPORT_ROLE_MAX_SESSION_SECONDS", DEFAULT_ROLE_MAX_SESSION_SECONDS),
            getattr(settings, "PASSPORT_SCOPED_CREDENTIALS_SECONDS", STS_MIN_DURATION_SECONDS),
        )
        try:
            response = sts_client().assume_role(
                RoleArn=self.account.role_arn,
                RoleSessionName=role_session_name,
                Policy=policy,
                DurationSeconds=scoped_duration_seconds(remaining=remaining, maximum=maximum),
            )
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"Cannot assume {self.account.role_arn} with a session policy: {exc}") from exc
        creds = response["Credentials"]
        return ScopedCredentials(
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            # To the second, as the policy's cut-off and credential_process's Expiration are.
            expiration=min(creds["Expiration"], not_after).replace(microsecond=0),
            role_session_name=role_session_name,
            regions=tuple(sorted({region for region, _ in instances})),
        )
