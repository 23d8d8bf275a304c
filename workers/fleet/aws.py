"""AWS backend of the fleet gateway: STS, EC2 and SSM through boto3.

``AWS_ENDPOINT_URL`` points every client at another endpoint (devcloud in the demo and
the tests); nothing here knows which one it talks to.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from django.conf import settings
from django.utils import timezone

from accounts.models import AwsAccount

logger = logging.getLogger(__name__)

# How much longer than the script's own timeout the portal waits for Run Command's verdict.
WAIT_SLACK_SECONDS = 30
# Run Command takes at most 50 instance ids per call.
BATCH_SIZE = 50
FINAL_STATUSES = {"Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated", "DeliveryTimedOut"}
_BOTO_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)


# The Session Manager documents Passport starts (CLI and browser terminal); scoped credentials allow no others.
SESSION_DOCUMENTS = ("AWS-StartSSHSession", "AWS-StartPortForwardingSession")
# AssumeRole's DurationSeconds runs from 900 s to the role's maximum session duration, which is
# one hour unless the customer raised it (PASSPORT_ROLE_MAX_SESSION_SECONDS says so).
STS_MIN_DURATION_SECONDS = 900
DEFAULT_ROLE_MAX_SESSION_SECONDS = 3600
# AWS refuses session policies longer than this (plain text, before packing).
SESSION_POLICY_MAX_CHARS = 2048
_INSTANCE_ID = re.compile(r"^(i|mi)-[0-9a-f]{8,17}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# RoleSessionName's alphabet, without the IAM wildcards it becomes part of a resource pattern.
_ROLE_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)


class FleetError(Exception):
    """Systems Manager could not do what was asked. ``retryable`` is False when trying again cannot help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class CommandResult:
    command_id: str
    status: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == "Success" and self.exit_code == 0

    def summary(self) -> str:
        tail = (self.stderr or self.stdout).strip().splitlines()[-5:]
        detail = "\n".join(tail)
        return f"Run Command {self.command_id} ended {self.status} (exit {self.exit_code})" + (
            f": {detail}" if detail else ""
        )


@dataclass
class InstanceRecord:
    """One instance as EC2 and Systems Manager describe it."""

    instance_id: str
    region: str
    name: str = ""
    state: str = ""
    platform: str = "linux"
    private_ip: str = ""
    network_interfaces: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    ssm_managed: bool = False
    ping_status: str = ""
    agent_version: str = ""
    platform_name: str = ""
    last_ping_at: datetime | None = None


@dataclass(frozen=True)
class ScopedCredentials:
    """Role credentials narrowed by a session policy. Held in memory only: never stored, never logged.

    ``expiration`` is when they stop being of use: the earlier of STS's expiry and the session
    policy's cut-off (the request's end).
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime
    role_session_name: str
    regions: tuple[str, ...] = ()  # where the instances they reach are

    def client_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }


def scoped_session_policy(
    *, account_id: str, instances: Sequence[tuple[str, str]], role_session_name: str, not_after: datetime
) -> str:
    """The session policy for one person's access: JSON, compact, deterministic.

    ``instances`` are ``(region, instance_id)`` pairs. It allows ssm:StartSession on exactly
    those instances with the two session documents Passport uses, and ssm:TerminateSession on
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
    if not _ROLE_SESSION_NAME.match(role_session_name):
        raise ValueError(f"{role_session_name!r} is not a usable RoleSessionName")
    if not_after.tzinfo is None:
        raise ValueError("not_after must be an aware datetime")
    for region, instance_id in instances:
        if not _REGION.match(region) or not _INSTANCE_ID.match(instance_id):
            raise ValueError(f"{region}/{instance_id} is not a region and an instance id")
    regions = sorted({region for region, _ in instances})
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
                        f"arn:aws:ec2:{region}:{account_id}:instance/{instance_id}"
                        for region, instance_id in sorted(set(instances))
                    ),
                    *(f"arn:aws:ssm:{region}::document/{name}" for region in regions for name in SESSION_DOCUMENTS),
                ],
                "Condition": until,
            },
            {
                "Sid": "EndOwnSessions",
                "Effect": "Allow",
                "Action": "ssm:TerminateSession",
                "Resource": [f"arn:aws:ssm:{region}:{account_id}:session/{role_session_name}-*" for region in regions],
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


_credentials_lock = threading.Lock()
_credentials: dict[str, tuple[dict[str, str], datetime]] = {}


def _assumed_credentials(account: AwsAccount) -> dict[str, str]:
    """Credentials for the account's portal role, cached until five minutes before they end."""
    with _credentials_lock:
        cached = _credentials.get(account.role_arn)
        if cached and cached[1] - timedelta(minutes=5) > timezone.now():
            return cached[0]
    sts = boto3.client(
        "sts", region_name=settings.AWS_REGION, endpoint_url=settings.AWS_ENDPOINT_URL or None, config=_BOTO_CONFIG
    )
    try:
        response = sts.assume_role(RoleArn=account.role_arn, RoleSessionName="passport-portal", DurationSeconds=3600)
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


class AwsFleet:
    """Systems Manager and EC2 for one AWS account."""

    def __init__(self, account: AwsAccount) -> None:
        self.account = account

    def _client(self, service: str, region: str, credentials: ScopedCredentials | None = None) -> Any:
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=settings.AWS_ENDPOINT_URL or None,
            config=_BOTO_CONFIG,
            **(credentials.client_kwargs() if credentials is not None else _assumed_credentials(self.account)),
        )

    # --- scoped credentials -----------------------------------------------------------
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
        sts = boto3.client(
            "sts", region_name=settings.AWS_REGION, endpoint_url=settings.AWS_ENDPOINT_URL or None, config=_BOTO_CONFIG
        )
        try:
            response = sts.assume_role(
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

    # --- inventory ----------------------------------------------------------------
    def describe(self, region: str) -> list[InstanceRecord]:
        try:
            records = self._ec2_instances(region)
            self._merge_ssm_information(region, records)
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"Inventory of {self.account.account_id}/{region} failed: {exc}") from exc
        except ResponseParserError as exc:
            # A tag holding a character XML cannot carry (ESC, say) makes the whole answer unreadable: the
            # region fails and keeps its rows, and the message leaves out the answer, tag and all.
            raise FleetError(f"Inventory of {self.account.account_id}/{region} failed: unreadable answer") from exc
        return list(records.values())

    def _ec2_instances(self, region: str) -> dict[str, InstanceRecord]:
        records: dict[str, InstanceRecord] = {}
        paginator = self._client("ec2", region).get_paginator("describe_instances")
        for page in paginator.paginate():
            for reservation in page.get("Reservations", []):
                for item in reservation.get("Instances", []):
                    state = item.get("State", {}).get("Name", "")
                    if state == "terminated":
                        continue
                    tags = {tag["Key"]: tag["Value"] for tag in item.get("Tags", [])}
                    records[item["InstanceId"]] = InstanceRecord(
                        instance_id=item["InstanceId"],
                        region=region,
                        name=tags.get("Name", ""),
                        state=state,
                        platform="windows" if item.get("Platform", "").lower() == "windows" else "linux",
                        private_ip=item.get("PrivateIpAddress", ""),
                        network_interfaces=[
                            {
                                "id": eni.get("NetworkInterfaceId", ""),
                                "private_ip": eni.get("PrivateIpAddress", ""),
                                "subnet_id": eni.get("SubnetId", ""),
                                "device_index": eni.get("Attachment", {}).get("DeviceIndex", 0),
                            }
                            for eni in item.get("NetworkInterfaces", [])
                        ],
                        tags=tags,
                    )
        return records

    def _merge_ssm_information(self, region: str, records: dict[str, InstanceRecord]) -> None:
        paginator = self._client("ssm", region).get_paginator("describe_instance_information")
        for page in paginator.paginate():
            for info in page.get("InstanceInformationList", []):
                record = records.get(info["InstanceId"])
                if record is None:  # a hybrid node or an instance of another region: not ours to list
                    continue
                record.ssm_managed = True
                record.ping_status = info.get("PingStatus", "")
                record.agent_version = info.get("AgentVersion", "")
                record.platform_name = " ".join(
                    part for part in (info.get("PlatformName", ""), info.get("PlatformVersion", "")) if part
                )
                if info.get("PlatformType", "").lower() == "windows":
                    record.platform = "windows"
                record.last_ping_at = info.get("LastPingDateTime")

    # --- IAM ----------------------------------------------------------------------
    def simulate_access(
        self, principal_arn: str, actions: list[str], resource_arns: list[str]
    ) -> dict[str, AccessDecision]:
        """What IAM's SimulatePrincipalPolicy says the principal may do on each resource.

        Asked with the portal's role in the account. A resource or action the answer leaves
        out counts as an implicit deny, never as allowed.
        """
        iam = self._client("iam", settings.AWS_REGION)
        found: dict[str, dict[str, str]] = {arn: {} for arn in resource_arns}
        try:
            pages = iam.get_paginator("simulate_principal_policy").paginate(
                PolicySourceArn=principal_arn, ActionNames=actions, ResourceArns=resource_arns
            )
            for page in pages:
                for result in page.get("EvaluationResults", []):
                    resource = result.get("EvalResourceName", "")
                    if resource in found:
                        found[resource][result["EvalActionName"]] = result["EvalDecision"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise FleetError(
                f"SimulatePrincipalPolicy for {principal_arn} refused: {code or exc}",
                retryable=code not in {"NoSuchEntity", "InvalidInput"},
            ) from exc
        except BotoCoreError as exc:
            raise FleetError(f"SimulatePrincipalPolicy for {principal_arn} failed: {exc}") from exc
        return {
            arn: AccessDecision({action: decisions.get(action, "implicitDeny") for action in actions})
            for arn, decisions in found.items()
        }

    # --- Run Command --------------------------------------------------------------
    def run_script(
        self, *, instance_id: str, region: str, platform: str, script: str, comment: str, timeout: int | None = None
    ) -> CommandResult:
        """Send one script to one instance and wait for its final state."""
        timeout = timeout or settings.PASSPORT_RUN_COMMAND_TIMEOUT
        document = "AWS-RunPowerShellScript" if platform == "windows" else "AWS-RunShellScript"
        ssm = self._client("ssm", region)
        try:
            response = ssm.send_command(
                InstanceIds=[instance_id],
                DocumentName=document,
                Comment=comment[:100],
                TimeoutSeconds=60,
                Parameters={"commands": [script], "executionTimeout": [str(timeout)]},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            retryable = code not in {"InvalidInstanceId", "InvalidDocument", "InvalidParameters"}
            raise FleetError(f"SendCommand to {instance_id} refused: {code or exc}", retryable=retryable) from exc
        except BotoCoreError as exc:
            raise FleetError(f"SendCommand to {instance_id} failed: {exc}") from exc
        command_id = response["Command"]["CommandId"]
        return self.wait_for(ssm, command_id=command_id, instance_id=instance_id, timeout=timeout + WAIT_SLACK_SECONDS)

    def run_script_batch(
        self,
        *,
        instance_ids: list[str],
        region: str,
        platform: str,
        script: str,
        comment: str,
        timeout: int | None = None,
    ) -> dict[str, CommandResult | FleetError]:
        """Send one script to many instances, ``BATCH_SIZE`` per Run Command call, and wait for all.

        Returns each instance's result, or the error that kept it from having one.
        """
        timeout = timeout or settings.PASSPORT_RUN_COMMAND_TIMEOUT
        document = "AWS-RunPowerShellScript" if platform == "windows" else "AWS-RunShellScript"
        ssm = self._client("ssm", region)
        results: dict[str, CommandResult | FleetError] = {}
        pending: dict[str, set[str]] = {}
        for start in range(0, len(instance_ids), BATCH_SIZE):
            chunk = instance_ids[start : start + BATCH_SIZE]
            try:
                response = ssm.send_command(
                    InstanceIds=chunk,
                    DocumentName=document,
                    Comment=comment[:100],
                    TimeoutSeconds=60,
                    Parameters={"commands": [script], "executionTimeout": [str(timeout)]},
                )
            except (ClientError, BotoCoreError) as exc:
                for instance_id in chunk:
                    results[instance_id] = FleetError(f"SendCommand refused: {exc}")
                continue
            pending[response["Command"]["CommandId"]] = set(chunk)
        deadline = time.monotonic() + timeout + WAIT_SLACK_SECONDS
        while pending:
            for command_id, waiting in list(pending.items()):
                try:
                    pages = ssm.get_paginator("list_command_invocations").paginate(CommandId=command_id, Details=True)
                    invocations = [item for page in pages for item in page.get("CommandInvocations", [])]
                except (ClientError, BotoCoreError) as exc:
                    raise FleetError(f"ListCommandInvocations {command_id} failed: {exc}") from exc
                for invocation in invocations:
                    instance_id = invocation.get("InstanceId", "")
                    # Only the instances asked for: never trust the service to have targeted just those.
                    if instance_id not in waiting or invocation.get("Status") not in FINAL_STATUSES:
                        continue
                    plugin = (invocation.get("CommandPlugins") or [{}])[0]
                    results[instance_id] = CommandResult(
                        command_id=command_id,
                        status=invocation["Status"],
                        exit_code=int(plugin.get("ResponseCode", -1)),
                        stdout=plugin.get("Output", ""),
                        stderr=plugin.get("StandardErrorContent", "") if "StandardErrorContent" in plugin else "",
                    )
                    waiting.discard(instance_id)
                if not waiting:
                    del pending[command_id]
            if pending and time.monotonic() >= deadline:
                for command_id, waiting in pending.items():
                    for instance_id in waiting:
                        results[instance_id] = FleetError(f"Run Command {command_id} on {instance_id} timed out")
                break
            if pending:
                time.sleep(settings.PASSPORT_RUN_COMMAND_POLL_SECONDS)
        return results

    def wait_for(self, ssm: Any, *, command_id: str, instance_id: str, timeout: int) -> CommandResult:
        deadline = time.monotonic() + timeout
        poll = settings.PASSPORT_RUN_COMMAND_POLL_SECONDS
        while True:
            try:
                invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
            except ClientError as exc:
                # Right after SendCommand the invocation may not exist yet.
                if exc.response.get("Error", {}).get("Code") != "InvocationDoesNotExist":
                    raise FleetError(f"GetCommandInvocation {command_id} failed: {exc}") from exc
                invocation = {"Status": "Pending"}
            except BotoCoreError as exc:
                raise FleetError(f"GetCommandInvocation {command_id} failed: {exc}") from exc
            status = invocation.get("Status", "Pending")
            if status in FINAL_STATUSES:
                return CommandResult(
                    command_id=command_id,
                    status=status,
                    exit_code=int(invocation.get("ResponseCode", -1)),
                    stdout=invocation.get("StandardOutputContent", ""),
                    stderr=invocation.get("StandardErrorContent", ""),
                )
            if time.monotonic() >= deadline:
                try:
                    ssm.cancel_command(CommandId=command_id, InstanceIds=[instance_id])
                except (ClientError, BotoCoreError):
                    logger.warning("cancel of timed-out command %s failed", command_id)
                raise FleetError(f"Run Command {command_id} on {instance_id} did not finish within {timeout} s")
            time.sleep(poll)

    # --- Session Manager ---------------------------------------------------------------
    def start_session(
        self,
        instance_id: str,
        region: str,
        document: str,
        parameters: dict[str, list[str]] | None = None,
        *,
        credentials: ScopedCredentials | None = None,
    ) -> dict[str, str]:
        """StartSession: ``SessionId``, ``TokenValue`` and ``StreamUrl`` for the data channel.

        With ``credentials`` (from ``assume_scoped``) the call is made with them instead of the
        portal's full role, so AWS itself refuses any other instance or document.
        """
        try:
            response = self._client("ssm", region, credentials).start_session(
                Target=instance_id, DocumentName=document, Parameters=parameters or {}
            )
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"StartSession on {instance_id} failed: {exc}") from exc
        return {key: response[key] for key in ("SessionId", "TokenValue", "StreamUrl")}

    def put_handoff(self, name: str, value: str, region: str) -> None:
        """Store a secret for one instance to read (SecureString, KMS ``alias/aws/ssm``).

        The instance reads it with its own role (``ssm:GetParameter``, which
        AmazonSSMManagedInstanceCore allows); the portal deletes it once the script has run.
        """
        try:
            self._client("ssm", region).put_parameter(
                Name=name, Value=value, Type="SecureString", Overwrite=True, Description="Passport hand-off"
            )
        except (ClientError, BotoCoreError) as exc:
            # Never the exception text alone: it must not carry the value. botocore's does not.
            raise FleetError(f"PutParameter {name} failed: {exc}") from exc

    def delete_handoff(self, name: str, region: str) -> None:
        """Delete a hand-off parameter; one already gone is not an error."""
        try:
            self._client("ssm", region).delete_parameter(Name=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return
            raise FleetError(f"DeleteParameter {name} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise FleetError(f"DeleteParameter {name} failed: {exc}") from exc

    def active_sessions(self, instance_id: str, region: str) -> list[dict[str, str]]:
        """The Session Manager sessions open on one instance now: ``SessionId`` and ``Owner`` each."""
        ssm = self._client("ssm", region)
        found: list[dict[str, str]] = []
        token: str | None = None
        try:
            while True:
                page = ssm.describe_sessions(
                    State="Active",
                    Filters=[{"key": "Target", "value": instance_id}],
                    **({"NextToken": token} if token else {}),
                )
                found += [
                    {"SessionId": item["SessionId"], "Owner": item.get("Owner", "")}
                    for item in page.get("Sessions", [])
                ]
                token = page.get("NextToken")
                if not token:
                    return found
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"DescribeSessions on {instance_id} failed: {exc}") from exc

    def terminate_session(self, session_id: str, region: str) -> None:
        """TerminateSession; ending a session that has already ended is not an error."""
        try:
            self._client("ssm", region).terminate_session(SessionId=session_id)
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"TerminateSession {session_id} failed: {exc}") from exc


@dataclass(frozen=True)
class AccessDecision:
    """IAM's verdict on one resource: the decision of each action asked about."""

    actions: dict[str, str]

    @property
    def allowed(self) -> bool:
        return bool(self.actions) and all(decision == "allowed" for decision in self.actions.values())

    @property
    def decision(self) -> str:
        """``allowed`` only when every action is; otherwise an explicit deny outranks an implicit one."""
        if self.allowed:
            return "allowed"
        if "explicitDeny" in self.actions.values():
            return "explicitDeny"
        return "implicitDeny"


def fleet_for(account: AwsAccount) -> AwsFleet:
    return AwsFleet(account)
