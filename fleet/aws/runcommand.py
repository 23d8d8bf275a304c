"""Run Command: scripts sent to instances, and the Parameter Store hand-off they read secrets from."""

from __future__ import annotations

import contextlib
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from fleet.aws.clients import AwsClients
from fleet.aws.output import from_content, from_plugin_output
from fleet.aws.paging import token_pages
from fleet.interface import WAIT_SLACK_SECONDS, CommandResult, FleetError

logger = logging.getLogger(__name__)

# Run Command takes at most 50 instance ids per call.
BATCH_SIZE = 50
# SendCommand refusals that another attempt would meet again.
FINAL_ERRORS = {"InvalidDocument", "InvalidParameters"}
# A refusal that is final only for an instance EC2 says is gone: AWS gives it too for an agent
# that is stopped, restarting or not yet registered, which another attempt may find back.
UNKNOWN_INSTANCE = "InvalidInstanceId"
GONE_STATES = {"shutting-down", "terminated"}
FINAL_STATUSES = {"Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated", "DeliveryTimedOut"}
# SendCommand's TimeoutSeconds: how long AWS tries to deliver the command to an agent that is away.
# A command expires (DeliveryTimedOut) only after this plus the script's executionTimeout (its
# ExpiresAfter): until then AWS may still deliver it, and Passport waits for it that long.
DELIVERY_TIMEOUT_SECONDS = 60
# The most an ExpiresAfter may add to that documented total: a bound on how long an answer makes a
# worker wait, kept well inside the broker's visibility timeout (a task unacknowledged longer is
# handed to another worker: passport_portal/settings/broker.py).
EXPIRY_ALLOWANCE_SECONDS = 300


def _send_command(ssm: Any, *, instance_ids: list[str], platform: str, script: str, comment: str, timeout: int) -> Any:
    """SendCommand with the shell document of the platform; the caller turns errors into FleetErrors."""
    return ssm.send_command(
        InstanceIds=instance_ids,
        DocumentName="AWS-RunPowerShellScript" if platform == "windows" else "AWS-RunShellScript",
        Comment=comment[:100],
        TimeoutSeconds=DELIVERY_TIMEOUT_SECONDS,
        Parameters={"commands": [script], "executionTimeout": [str(timeout)]},
    )


def _wait_seconds(response: Any, timeout: int) -> float:
    """How long to wait for a command SendCommand took: until its ExpiresAfter (AWS may deliver it to
    an agent back from away until then), counted from its RequestedDateTime on AWS's own clock, plus
    WAIT_SLACK_SECONDS. Never less than the documented total (the delivery timeout plus ``timeout``),
    nor more than EXPIRY_ALLOWANCE_SECONDS over it, whatever the answer says."""
    documented = DELIVERY_TIMEOUT_SECONDS + timeout
    command = response.get("Command") if isinstance(response, dict) else None
    command = command if isinstance(command, dict) else {}
    expires, requested = command.get("ExpiresAfter"), command.get("RequestedDateTime")
    total = float(documented)
    # Not both aware or both naive: TypeError, and the documented total stands.
    with contextlib.suppress(TypeError):
        if isinstance(expires, datetime) and isinstance(requested, datetime):
            total = (expires - requested).total_seconds()
    return min(max(total, documented), documented + EXPIRY_ALLOWANCE_SECONDS) + WAIT_SLACK_SECONDS


FIRST_POLL_SECONDS = 0.05


class CommandDurations:
    """How long this process's recent commands took, from SendCommand until their final state was
    seen: what the polls of the next command are timed by. The median of the last ``SIZE``, so one
    slow command (or one stuck until its timeout) hardly moves it."""

    SIZE = 32
    ENOUGH = 4  # fewer than this and there is nothing typical yet

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=self.SIZE)

    def record(self, seconds: float) -> None:
        with self._lock:
            self._recent.append(seconds)

    def typical(self) -> float | None:
        with self._lock:
            if len(self._recent) < self.ENOUGH:
                return None
            return statistics.median(self._recent)


class CommandTimes:
    """``CommandDurations`` by kind of command: a Windows script, or one for several hosts (which
    ends with its slowest), takes a time of its own, and must not time the polls of the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, CommandDurations] = {}

    def of(self, platform: str, *, hosts: int = 1) -> CommandDurations:
        kind = f"{platform}, {'one host' if hosts == 1 else 'several hosts'}"
        with self._lock:
            return self._kinds.setdefault(kind, CommandDurations())


command_durations = CommandTimes()


def poll_delays(typical: float | None = None) -> Iterator[float]:
    """The waits before each poll of a command: between two polls at most
    PASSPORT_RUN_COMMAND_POLL_SECONDS.

    With no ``typical`` duration yet: short at first (a small script is done within a fraction
    of a second, and a fixed interval would add up to a whole one to every grant), doubling. Once
    commands here have a typical duration: the first poll at three quarters of it, however long
    that is (a poll before that would almost always find the command still running), then steps
    of a quarter of it, doubling. That is fewer calls per command (each costs CPU here, and
    counts against the account's rate limits in AWS, where a command takes a second or more);
    only a command much shorter than the typical one is seen later than with the doubling from
    50 ms, by at most three quarters of the typical duration.
    """
    cap = float(settings.PASSPORT_RUN_COMMAND_POLL_SECONDS)
    if typical is None:
        first, step = min(FIRST_POLL_SECONDS, cap), 2 * FIRST_POLL_SECONDS
    else:
        first, step = max(0.75 * typical, FIRST_POLL_SECONDS), max(0.25 * typical, FIRST_POLL_SECONDS)
    yield first
    step = min(step, cap)
    while True:
        yield step
        step = min(step * 2, cap)


def _plugin_result(command_id: str, invocation: dict[str, Any]) -> CommandResult:
    """One instance's result from its ListCommandInvocations entry (with Details): at most 2,500
    bytes of output, ``truncated`` when it may be more."""
    plugin = (invocation.get("CommandPlugins") or [{}])[0]
    output = from_plugin_output(str(plugin.get("Output") or ""))
    return CommandResult(
        command_id=command_id,
        status=invocation["Status"],
        exit_code=int(plugin.get("ResponseCode", -1)),
        stdout=output.stdout,
        stderr=output.stderr,
        truncated=output.truncated,
    )


def _content_result(command_id: str, invocation: dict[str, Any]) -> CommandResult:
    """One instance's result from GetCommandInvocation: up to 24,000 bytes of standard output."""
    output = from_content(
        str(invocation.get("StandardOutputContent") or ""), str(invocation.get("StandardErrorContent") or "")
    )
    return CommandResult(
        command_id=command_id,
        status=invocation["Status"],
        exit_code=int(invocation.get("ResponseCode", -1)),
        stdout=output.stdout,
        stderr=output.stderr,
        truncated=output.truncated,
    )


def _cancel(ssm: Any, command_id: str, instance_ids: list[str]) -> None:
    """CancelCommand for a command that ran out of time; a failure is only logged."""
    try:
        ssm.cancel_command(CommandId=command_id, InstanceIds=instance_ids)
    except (ClientError, BotoCoreError):
        logger.warning("cancel of timed-out command %s failed", command_id)


class RunCommandMixin(AwsClients):
    def run_script(
        self, *, instance_id: str, region: str, platform: str, script: str, comment: str, timeout: int | None = None
    ) -> CommandResult:
        """Send one script to one instance and wait for its final state."""
        timeout = timeout or settings.PASSPORT_RUN_COMMAND_TIMEOUT
        ssm = self._client("ssm", region)
        try:
            response = _send_command(
                ssm, instance_ids=[instance_id], platform=platform, script=script, comment=comment, timeout=timeout
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            final, why = self._refusal_is_final(code, instance_id, region)
            raise FleetError(
                f"SendCommand to {instance_id} refused: {code or exc}{why}",
                retryable=not final,
                instance_gone=final and code == UNKNOWN_INSTANCE,
            ) from exc
        except BotoCoreError as exc:
            raise FleetError(f"SendCommand to {instance_id} failed: {exc}") from exc
        return self.wait_for(
            ssm,
            command_id=response["Command"]["CommandId"],
            instance_id=instance_id,
            timeout=_wait_seconds(response, timeout),
            durations=command_durations.of(platform),
        )

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
    ) -> dict[str, CommandResult | FleetError]:
        """Send one script to many instances, ``BATCH_SIZE`` per Run Command call, and wait for all.

        Returns each instance's result, or the error that kept it from having one; ``on_result``
        hears of each instance as soon as that is known, while the others are still waited for.
        """
        timeout = timeout or settings.PASSPORT_RUN_COMMAND_TIMEOUT
        ssm = self._client("ssm", region)
        results: dict[str, CommandResult | FleetError] = {}

        def found(instance_id: str, result: CommandResult | FleetError) -> None:
            results[instance_id] = result
            if on_result is not None:
                on_result(instance_id, result)

        pending: dict[str, set[str]] = {}
        deadlines: dict[str, float] = {}  # each command's, from its own ExpiresAfter
        for start in range(0, len(instance_ids), BATCH_SIZE):
            chunk = instance_ids[start : start + BATCH_SIZE]
            try:
                response = _send_command(
                    ssm, instance_ids=chunk, platform=platform, script=script, comment=comment, timeout=timeout
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                # One unknown instance refuses the whole call: each host then goes alone, and only
                # the unknown one meets the refusal (for good only if it is gone).
                final, why = self._refusal_is_final(code, chunk[0], region) if len(chunk) == 1 else (False, "")
                gone = final and code == UNKNOWN_INSTANCE
                for instance_id in chunk:
                    found(
                        instance_id,
                        FleetError(f"SendCommand refused: {code or exc}{why}", retryable=not final, instance_gone=gone),
                    )
                continue
            except BotoCoreError as exc:
                for instance_id in chunk:
                    found(instance_id, FleetError(f"SendCommand failed: {exc}"))
                continue
            pending[response["Command"]["CommandId"]] = set(chunk)
            deadlines[response["Command"]["CommandId"]] = time.monotonic() + _wait_seconds(response, timeout)
        started = time.monotonic()
        durations = command_durations.of(platform, hosts=len(instance_ids))
        delays = poll_delays(durations.typical())
        if pending:
            time.sleep(next(delays))
        while pending:
            for command_id, waiting in list(pending.items()):
                for invocation in self._invocations(ssm, command_id):
                    instance_id = invocation.get("InstanceId", "")
                    # Only the instances asked for: never trust the service to have targeted just those.
                    if instance_id not in waiting or invocation.get("Status") not in FINAL_STATUSES:
                        continue
                    waiting.discard(instance_id)
                    result = _plugin_result(command_id, invocation)
                    if result.truncated:
                        # The listing keeps 2,500 bytes; GetCommandInvocation keeps 24,000.
                        result = self._full_result(ssm, command_id, instance_id, result)
                    found(instance_id, result)
                if not waiting:
                    del pending[command_id]
                    durations.record(time.monotonic() - started)
            for command_id in [c for c in pending if time.monotonic() >= deadlines[c]]:
                waiting = pending.pop(command_id)
                _cancel(ssm, command_id, sorted(waiting))
                for instance_id in sorted(waiting):
                    found(instance_id, FleetError(f"Run Command {command_id} on {instance_id} timed out"))
            if pending:
                time.sleep(next(delays))
        return results

    def _refusal_is_final(self, code: str, instance_id: str, region: str) -> tuple[bool, str]:
        """Whether SendCommand's refusal of one instance would meet every later attempt, and why.
        An unknown instance's refusal is final only when EC2 says it is gone (``instance_gone``)."""
        if code != UNKNOWN_INSTANCE:
            return code in FINAL_ERRORS, ""
        try:
            reservations = self._client("ec2", region).describe_instances(InstanceIds=[instance_id])["Reservations"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "").startswith("InvalidInstanceID."):
                return True, " (EC2 has no such instance)"
            return False, " (its SSM Agent may be away; EC2 could not say more)"
        except BotoCoreError:
            return False, " (its SSM Agent may be away; EC2 could not say more)"
        states = {item.get("State", {}).get("Name") for r in reservations for item in r.get("Instances", [])}
        if not states or states <= GONE_STATES:
            return True, " (the instance is terminated)"
        return False, " (its SSM Agent is not answering)"

    @staticmethod
    def _invocations(ssm: Any, command_id: str) -> list[dict[str, Any]]:
        """ListCommandInvocations of one command, every page, with each plugin's output."""
        found: list[dict[str, Any]] = []
        what = f"ListCommandInvocations {command_id}"
        try:
            for page in token_pages(ssm.list_command_invocations, what=what, CommandId=command_id, Details=True):
                found += page.get("CommandInvocations", [])
            return found
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"ListCommandInvocations {command_id} failed: {exc}") from exc

    @staticmethod
    def _full_result(ssm: Any, command_id: str, instance_id: str, listed: CommandResult) -> CommandResult:
        """The result with the longer output GetCommandInvocation keeps; the listed one if that fails."""
        try:
            invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except (ClientError, BotoCoreError):
            logger.warning("GetCommandInvocation %s on %s failed: its output stays cut short", command_id, instance_id)
            return listed
        if invocation.get("Status") != listed.status:
            return listed  # not the same final state (it cannot change once final): trust neither more
        return _content_result(command_id, invocation)

    def wait_for(
        self, ssm: Any, *, command_id: str, instance_id: str, timeout: float, durations: CommandDurations | None = None
    ) -> CommandResult:
        """Poll the command sent just now until it is final, for ``timeout`` seconds at most (then it is
        cancelled); its duration then times the next ones' polls."""
        started = time.monotonic()
        deadline = started + timeout
        durations = durations or command_durations.of("linux")
        delays = poll_delays(durations.typical())
        time.sleep(next(delays))  # right after SendCommand nothing has run yet
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
                durations.record(time.monotonic() - started)
                return _content_result(command_id, invocation)
            if time.monotonic() >= deadline:
                _cancel(ssm, command_id, [instance_id])
                raise FleetError(f"Run Command {command_id} on {instance_id} did not finish within {timeout:.0f} s")
            time.sleep(next(delays))

    def put_handoff(self, name: str, value: str, region: str) -> None:
        """Store a secret for one instance to read (SecureString, encrypted with the KMS key
        ``PASSPORT_HANDOFF_KMS_KEY`` names, or the account's ``aws/ssm`` when it names none).

        The instance reads it with its own role (``ssm:GetParameter``, which
        AmazonSSMManagedInstanceCore allows, and ``kms:Decrypt`` on a key of your own); the portal
        deletes it once the script has run.
        """
        key = {"KeyId": settings.PASSPORT_HANDOFF_KMS_KEY} if settings.PASSPORT_HANDOFF_KMS_KEY else {}
        try:
            self._client("ssm", region).put_parameter(
                Name=name, Value=value, Type="SecureString", Overwrite=True, Description="Passport hand-off", **key
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
