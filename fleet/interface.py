"""The fleet gateway's contract: what the services may ask of the instances, and what comes back.

``Fleet`` is the one interface the services use; ``fleet.selection.fleet_for`` picks the
implementation (boto3 in ``fleet.aws``; the tests' fake in ``tests/fakes/fleet.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# How much longer than its ExpiresAfter (the delivery timeout plus the script's) a Run Command may take to come back.
WAIT_SLACK_SECONDS = 30


class FleetAccount(Protocol):
    """What the gateway needs of an AWS account (``accounts.models.AwsAccount`` is one)."""

    @property
    def account_id(self) -> str: ...

    @property
    def role_arn(self) -> str: ...


class FleetError(Exception):
    """Systems Manager could not do what was asked. ``retryable`` is False when trying again cannot help.

    ``code`` names the kind of failure when the gateway knows it (AWS's error code, such as
    ``ThrottlingException``, or botocore's exception class): a short name fit for the Logbook,
    where the message, which repeats AWS's own text and the ARNs in it, is not wanted.

    ``instance_gone`` is True only when the refusal is for good because EC2 says the instance is
    terminated or has no such instance: nothing will ever run there again, and whatever was on
    it went with it. Any other refusal says nothing of the instance.
    """

    def __init__(self, message: str, *, retryable: bool = True, code: str = "", instance_gone: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.instance_gone = instance_gone


# What a command's summary quotes of its output (its end), and the most a summary holds in all.
SUMMARY_DETAIL_CHARS = 2_000
SUMMARY_MAX_CHARS = 2_400


@dataclass(frozen=True)
class CommandResult:
    command_id: str
    status: str
    exit_code: int
    stdout: str
    stderr: str
    # Systems Manager kept only the start of the output (or may have): its end is not the script's.
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "Success" and self.exit_code == 0

    def summary(self) -> str:
        """The last lines of the output, at most ``SUMMARY_MAX_CHARS`` in all: it goes into the grant's
        last error and its Logbook entries, once per attempt."""
        output = (self.stderr or self.stdout).strip()
        # Only the end is read: a line may be megabytes long (splitting it all would copy it).
        tail = output[-SUMMARY_DETAIL_CHARS:].splitlines()[-5:]
        if tail and len(output) > SUMMARY_DETAIL_CHARS:
            tail[0] = "…" + tail[0][-(SUMMARY_DETAIL_CHARS - 1) :]
        if self.truncated and tail:
            tail.append("[the rest of the output was cut short by Systems Manager]")
        detail = "\n".join(tail)
        head = f"Run Command {self.command_id[:64]} ended {self.status[:64]} (exit {str(self.exit_code)[:20]})"
        return head + (f": {detail}" if detail else "")


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


@dataclass(frozen=True)
class AccessDecision:
    """IAM's verdict on one resource: the decision of each action asked about.

    ``missing_context`` names the condition keys the person's policies need for it that
    Passport could not give AWS (``aws:SourceIp``, a tag key it could not send ...): with
    any, AWS's answer was reached without them, so it is not taken as allowed.
    ``unconfirmed`` says why AWS was not asked about the resource at all (its tags that a
    policy looks at could not be sent faithfully); then it is not allowed either.
    """

    actions: dict[str, str]
    missing_context: tuple[str, ...] = ()
    unconfirmed: str = ""

    @property
    def allowed(self) -> bool:
        return (
            bool(self.actions)
            and not self.missing_context
            and not self.unconfirmed
            and all(decision == "allowed" for decision in self.actions.values())
        )

    @property
    def decision(self) -> str:
        """``allowed`` only when every action is; otherwise an explicit deny outranks an implicit one."""
        if self.allowed:
            return "allowed"
        if "explicitDeny" in self.actions.values():
            return "explicitDeny"
        return "implicitDeny"


class Fleet(Protocol):
    """Systems Manager, EC2, STS and IAM for one AWS account, as the services use them."""

    def describe(self, region: str) -> list[InstanceRecord]: ...

    def run_script(
        self, *, instance_id: str, region: str, platform: str, script: str, comment: str, timeout: int | None = None
    ) -> CommandResult: ...

    def run_script_batch(
        self,
        *,
        instance_ids: list[str],
        region: str,
        platform: str,
        script: str,
        comment: str,
        timeout: int | None = None,
        on_result: Callable[[str, CommandResult | FleetError], None] | None = None,
    ) -> dict[str, CommandResult | FleetError]: ...

    def put_handoff(self, name: str, value: str, region: str) -> None: ...

    def delete_handoff(self, name: str, region: str) -> None: ...

    def assume_scoped(
        self, *, instances: Sequence[tuple[str, str]], role_session_name: str, not_after: datetime
    ) -> ScopedCredentials: ...

    def start_session(
        self,
        instance_id: str,
        region: str,
        document: str,
        parameters: dict[str, list[str]] | None = None,
        *,
        credentials: ScopedCredentials | None = None,
    ) -> dict[str, str]: ...

    def active_sessions(self, instance_id: str, region: str) -> list[dict[str, str]]: ...

    def terminate_session(self, session_id: str, region: str) -> None: ...

    def simulate_access(
        self,
        principal_arn: str,
        questions: Mapping[str, Sequence[str]],
        tags: Mapping[str, Mapping[str, str]],
        context: Mapping[str, str],
    ) -> dict[str, AccessDecision]: ...


__all__ = [
    "WAIT_SLACK_SECONDS",
    "AccessDecision",
    "CommandResult",
    "Fleet",
    "FleetAccount",
    "FleetError",
    "InstanceRecord",
    "ScopedCredentials",
]
