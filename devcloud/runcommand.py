"""SSM Run Command with real per-instance state.

moto marks every command Success at once and targets every instance of the region. Here
each invocation has its own life: a local host really runs ``AWS-RunShellScript``
(Pending -> InProgress -> Success/Failed/TimedOut/Cancelled, with its exit code and
output), any other online instance accepts the command and succeeds with empty output,
and an instance whose agent is not online keeps it Pending until the delivery timeout.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moto.ssm.models import ssm_backends

from devcloud import errors
from devcloud.fleet import ManagedInstance
from devcloud.localhost import ROOT_ENV, LocalHosts, ScriptResult, ScriptRun

PENDING = "Pending"
IN_PROGRESS = "InProgress"
SUCCESS = "Success"
FAILED = "Failed"
TIMED_OUT = "TimedOut"
CANCELLING = "Cancelling"
CANCELLED = "Cancelled"
FINISHED = frozenset({SUCCESS, FAILED, TIMED_OUT, CANCELLED})

# What AWS keeps of a plugin's output: GetCommandInvocation and ListCommandInvocations differ.
STANDARD_CONTENT_LIMIT = 24_000
PLUGIN_OUTPUT_LIMIT = 2_500

DEFAULT_EXECUTION_TIMEOUT = 3600
MAX_EXECUTION_TIMEOUT = 172_800
_PARAMETER_READ_RE = re.compile(r"Get-SSMParameter -Name '([A-Za-z0-9_.\-/]+)'")
DEFAULT_DELIVERY_TIMEOUT = 3600


@dataclass(frozen=True)
class RunDocument:
    """An AWS-owned Run Command document; moto does not load these, so they live here."""

    name: str
    plugin_name: str
    platform_type: str


DOCUMENTS = {
    document.name: document
    for document in (
        RunDocument("AWS-RunShellScript", "aws:runShellScript", "Linux"),
        RunDocument("AWS-RunPowerShellScript", "aws:runPowerShellScript", "Windows"),
    )
}
_DOCUMENT_PARAMETERS = frozenset({"commands", "workingDirectory", "executionTimeout"})


@dataclass(frozen=True)
class Script:
    """The validated parameters of a run-script document."""

    commands: list[str]
    working_directory: str | None
    execution_timeout: int

    @property
    def text(self) -> str:
        return "\n".join(self.commands) + "\n"


def parse_script(document: RunDocument, parameters: Mapping[str, Any]) -> Script:
    """Validate Parameters the way the document's schema would (InvalidParameters)."""
    unknown = sorted(set(parameters) - _DOCUMENT_PARAMETERS)
    if unknown:
        raise errors.InvalidParameters(f"Parameters {unknown} are not defined in document {document.name}.")
    commands = parameters.get("commands")
    if not commands or not isinstance(commands, list) or not all(isinstance(line, str) for line in commands):
        raise errors.InvalidParameters(f"Document {document.name} requires parameter commands (a list of strings).")
    timeout_text = _single(parameters, "executionTimeout") or str(DEFAULT_EXECUTION_TIMEOUT)
    if not timeout_text.isdigit() or not 1 <= int(timeout_text) <= MAX_EXECUTION_TIMEOUT:
        raise errors.InvalidParameters(
            f"executionTimeout must be a whole number of seconds from 1 to {MAX_EXECUTION_TIMEOUT}."
        )
    return Script(
        commands=commands,
        working_directory=_single(parameters, "workingDirectory") or None,
        execution_timeout=int(timeout_text),
    )


def _single(parameters: Mapping[str, Any], name: str) -> str:
    values = parameters.get(name) or [""]
    if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], str):
        raise errors.InvalidParameters(f"Parameter {name} takes exactly one string value.")
    return values[0].strip()


@dataclass
class Invocation:
    """One command on one instance (AWS: a command invocation with one plugin)."""

    command: Command
    instance_id: str
    instance_name: str
    status: str = PENDING
    status_details: str = PENDING
    response_code: int = -1
    stdout: str = ""
    stderr: str = ""
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    run: ScriptRun | None = field(default=None, repr=False)
    # What a script asked Parameter Store for when it ran (name -> decrypted value), for the tests.
    parameters_read: dict[str, str] = field(default_factory=dict, repr=False)

    def finish(self, status: str, details: str, response_code: int, stdout: str = "", stderr: str = "") -> None:
        now = _now()
        self.status, self.status_details, self.response_code = status, details, response_code
        self.stdout, self.stderr = stdout, stderr
        self.started = self.started or now
        self.ended = now

    def expire_undelivered(self, now: dt.datetime) -> None:
        """An agent that never picked the command up lets it time out (AWS: DeliveryTimedOut)."""
        if self.status == PENDING and self.run is None and now >= self.command.expires_after:
            self.status, self.status_details = TIMED_OUT, "DeliveryTimedOut"

    def plugin_output(self) -> str:
        output = self.stdout
        if self.stderr:
            output += "\n----------ERROR-------\n" + self.stderr
        return output[:PLUGIN_OUTPUT_LIMIT]

    def get_response(self) -> dict[str, Any]:
        """GetCommandInvocation's answer."""
        command = self.command
        finished = self.status in FINISHED
        return {
            "CommandId": command.command_id,
            "InstanceId": self.instance_id,
            "Comment": command.comment,
            "DocumentName": command.document.name,
            "DocumentVersion": "1",
            "PluginName": command.document.plugin_name,
            "ResponseCode": self.response_code,
            "ExecutionStartDateTime": _aws_time_text(self.started),
            "ExecutionElapsedTime": _elapsed_text(self.started, self.ended),
            "ExecutionEndDateTime": _aws_time_text(self.ended),
            "Status": self.status,
            "StatusDetails": self.status_details,
            "StandardOutputContent": self.stdout[:STANDARD_CONTENT_LIMIT] if finished else "",
            "StandardOutputUrl": "",
            "StandardErrorContent": self.stderr[:STANDARD_CONTENT_LIMIT] if finished else "",
            "StandardErrorUrl": "",
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        }

    def list_response(self, *, details: bool) -> dict[str, Any]:
        """One entry of ListCommandInvocations; ``details`` adds the plugin and its output."""
        command = self.command
        response: dict[str, Any] = {
            "CommandId": command.command_id,
            "InstanceId": self.instance_id,
            "InstanceName": self.instance_name,
            "Comment": command.comment,
            "DocumentName": command.document.name,
            "DocumentVersion": "1",
            "RequestedDateTime": command.requested,
            "Status": self.status,
            "StatusDetails": self.status_details,
            "TraceOutput": "",
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
            "CommandPlugins": [],
            "ServiceRole": command.options.get("ServiceRoleArn", ""),
            "NotificationConfig": command.notification_config,
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        }
        if details:
            plugin: dict[str, Any] = {
                "Name": command.document.plugin_name,
                "Status": self.status,
                "StatusDetails": self.status_details,
                "ResponseCode": self.response_code,
                "Output": self.plugin_output() if self.status in FINISHED else "",
                "StandardOutputUrl": "",
                "StandardErrorUrl": "",
                "OutputS3Region": command.options.get("OutputS3Region", ""),
                "OutputS3BucketName": command.options.get("OutputS3BucketName", ""),
                "OutputS3KeyPrefix": command.options.get("OutputS3KeyPrefix", ""),
            }
            if self.started is not None:
                plugin["ResponseStartDateTime"] = self.started
            if self.ended is not None:
                plugin["ResponseFinishDateTime"] = self.ended
            response["CommandPlugins"] = [plugin]
        return response


@dataclass
class Command:
    command_id: str
    account_id: str
    region: str
    document: RunDocument
    comment: str
    parameters: dict[str, Any]
    targets: list[dict[str, Any]]
    instance_ids: list[str]
    timeout_seconds: int
    requested: dt.datetime
    options: dict[str, Any]  # echoed back as given: concurrency, S3 output, service role
    invocations: dict[str, Invocation] = field(default_factory=dict)

    @property
    def expires_after(self) -> dt.datetime:
        return self.requested + dt.timedelta(seconds=self.timeout_seconds)

    @property
    def notification_config(self) -> dict[str, Any]:
        return self.options.get("NotificationConfig") or {
            "NotificationArn": "",
            "NotificationEvents": [],
            "NotificationType": "",
        }

    def status(self) -> str:
        statuses = {invocation.status for invocation in self.invocations.values()}
        if not statuses or statuses == {PENDING}:
            return PENDING
        if CANCELLING in statuses:
            return CANCELLING
        if statuses - FINISHED:
            return IN_PROGRESS
        for status in (FAILED, TIMED_OUT, CANCELLED):
            if status in statuses:
                return status
        return SUCCESS

    def response(self) -> dict[str, Any]:
        invocations = list(self.invocations.values())
        delivery_timeouts = sum(1 for i in invocations if i.status_details == "DeliveryTimedOut")
        failures = sum(1 for i in invocations if i.status in {FAILED, TIMED_OUT}) - delivery_timeouts
        status = self.status()
        return {
            "CommandId": self.command_id,
            "DocumentName": self.document.name,
            "DocumentVersion": "1",
            "Comment": self.comment,
            "ExpiresAfter": self.expires_after,
            "Parameters": self.parameters,
            "InstanceIds": self.instance_ids,
            "Targets": self.targets,
            "RequestedDateTime": self.requested,
            "Status": status,
            "StatusDetails": status,
            "OutputS3Region": self.options.get("OutputS3Region", ""),
            "OutputS3BucketName": self.options.get("OutputS3BucketName", ""),
            "OutputS3KeyPrefix": self.options.get("OutputS3KeyPrefix", ""),
            "MaxConcurrency": self.options.get("MaxConcurrency", "50"),
            "MaxErrors": self.options.get("MaxErrors", "0"),
            "TargetCount": len(invocations),
            "CompletedCount": sum(1 for i in invocations if i.status in FINISHED),
            "ErrorCount": failures,
            "DeliveryTimedOutCount": delivery_timeouts,
            "ServiceRole": self.options.get("ServiceRoleArn", ""),
            "NotificationConfig": self.notification_config,
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
            "TimeoutSeconds": self.timeout_seconds,
        }


class CommandStore:
    """Every Run Command of every account and region, behind one lock.

    Handlers run on the server's request threads and scripts finish on their own threads;
    every read and write of a command goes through this lock.
    """

    def __init__(self, hosts: LocalHosts) -> None:
        self._hosts = hosts
        self._lock = threading.RLock()
        self._commands: dict[tuple[str, str], dict[str, Command]] = {}

    def send(
        self,
        *,
        account_id: str,
        region: str,
        document: RunDocument,
        script: Script,
        parameters: dict[str, Any],
        comment: str,
        timeout_seconds: int | None,
        targets: list[dict[str, Any]],
        instance_ids: list[str],
        instances: list[ManagedInstance],
        options: dict[str, Any],
    ) -> dict[str, Any]:
        command = Command(
            command_id=str(uuid.uuid4()),
            account_id=account_id,
            region=region,
            document=document,
            comment=comment,
            parameters=parameters,
            targets=targets,
            instance_ids=instance_ids,
            timeout_seconds=timeout_seconds or DEFAULT_DELIVERY_TIMEOUT,
            requested=_now(),
            options=options,
        )
        with self._lock:
            self._commands.setdefault((account_id, region), {})[command.command_id] = command
            for instance in instances:
                command.invocations[instance.instance_id] = Invocation(
                    command, instance.instance_id, instance.computer_name
                )
            # SendCommand answers before any agent has the command: Pending, as in AWS.
            response = command.response()
            for instance in instances:
                self._deliver(command.invocations[instance.instance_id], instance, script)
            return response

    def commands(
        self, account_id: str, region: str, *, command_id: str | None = None, instance_id: str | None = None
    ) -> list[dict[str, Any]]:
        """ListCommands: newest first."""
        with self._lock:
            found = self._find(account_id, region, command_id)
            self._expire(found)
            return [c.response() for c in found if instance_id is None or instance_id in c.invocations]

    def invocation(
        self, account_id: str, region: str, command_id: str, instance_id: str, plugin_name: str | None
    ) -> dict[str, Any]:
        with self._lock:
            command = self._find(account_id, region, command_id)[0]
            invocation = command.invocations.get(instance_id)
            if invocation is None:
                raise errors.InvocationDoesNotExist(f"Command {command_id} was not sent to {instance_id}.")
            if plugin_name and plugin_name != command.document.plugin_name:
                raise errors.InvalidPluginName(f"Plugin {plugin_name} is not part of {command.document.name}.")
            self._expire([command])
            return invocation.get_response()

    def parameters_read(self, account_id: str, region: str, command_id: str, instance_id: str) -> dict[str, str]:
        """What the script of one invocation read from Parameter Store when it ran (for the tests)."""
        with self._lock:
            return dict(self._find(account_id, region, command_id)[0].invocations[instance_id].parameters_read)

    def invocations(
        self,
        account_id: str,
        region: str,
        *,
        command_id: str | None,
        instance_id: str | None,
        details: bool,
    ) -> list[dict[str, Any]]:
        """ListCommandInvocations, newest command first."""
        with self._lock:
            found = self._find(account_id, region, command_id)
            self._expire(found)
            return [
                invocation.list_response(details=details)
                for command in found
                for invocation in command.invocations.values()
                if instance_id is None or invocation.instance_id == instance_id
            ]

    def cancel(self, account_id: str, region: str, command_id: str, instance_ids: Iterable[str]) -> None:
        with self._lock:
            command = self._find(account_id, region, command_id)[0]
            wanted = list(instance_ids) or list(command.invocations)
            unknown = [i for i in wanted if i not in command.invocations]
            if unknown:
                raise errors.InvalidInstanceId(f"Command {command_id} was not sent to {', '.join(unknown)}.")
            self._expire([command])
            for instance_id in wanted:
                invocation = command.invocations[instance_id]
                if invocation.status in FINISHED:
                    continue
                if invocation.run is None:
                    invocation.finish(CANCELLED, CANCELLED, -1)
                else:
                    invocation.status = invocation.status_details = CANCELLING
                    invocation.run.cancel()

    def clear(self) -> None:
        """Forget every command (moto's reset) and stop the scripts still running."""
        with self._lock:
            runs = [
                invocation.run
                for commands in self._commands.values()
                for command in commands.values()
                for invocation in command.invocations.values()
                if invocation.run is not None and invocation.status not in FINISHED
            ]
            self._commands.clear()
        for run in runs:
            run.cancel()

    def _find(self, account_id: str, region: str, command_id: str | None) -> list[Command]:
        commands = self._commands.get((account_id, region), {})
        if command_id is None:
            return sorted(commands.values(), key=lambda c: c.requested, reverse=True)
        if command_id not in commands:
            raise errors.InvalidCommandId(f"Command {command_id} does not exist.")
        return [commands[command_id]]

    def _expire(self, commands: Iterable[Command]) -> None:
        now = _now()
        for command in commands:
            for invocation in command.invocations.values():
                invocation.expire_undelivered(now)

    def _deliver(self, invocation: Invocation, instance: ManagedInstance, script: Script) -> None:
        document = invocation.command.document
        if not instance.online:
            return
        if instance.platform_type != document.platform_type:
            # The agent cannot run the plugin on this platform (e.g. a shell script on Windows).
            invocation.finish(
                FAILED, FAILED, 1, stderr=f"{document.plugin_name} is not supported on {instance.platform_type}."
            )
            return
        if not instance.local:
            # devcloud runs no Windows; what it does check is the hand-off such a script reads
            # from Parameter Store: there, readable, at the moment the agent runs it.
            problem = self._read_parameters(invocation, script.text)
            if problem:
                invocation.finish(FAILED, FAILED, 1, stderr=f"Get-SSMParameter : {problem}")
            else:
                invocation.finish(SUCCESS, SUCCESS, 0)
            return
        command = invocation.command

        def started() -> None:
            with self._lock:
                if invocation.status == PENDING:
                    invocation.status = invocation.status_details = IN_PROGRESS
                    invocation.started = _now()

        def finished(result: ScriptResult) -> None:
            with self._lock:
                self._record(invocation, result)

        invocation.run = self._hosts.run_script(
            instance_id=instance.instance_id,
            hostname=instance.computer_name,
            script=script.text,
            run_dir=self._hosts.host_dir(instance.instance_id) / "commands" / command.command_id,
            timeout=script.execution_timeout,
            # The agent runs as a root service: its scripts inherit a root environment (PATH with the
            # sbin directories), plus the two variables the agent itself sets.
            env={**ROOT_ENV, "AWS_SSM_INSTANCE_ID": instance.instance_id, "AWS_SSM_REGION_NAME": command.region},
            working_directory=script.working_directory,
            on_start=started,
            on_finish=finished,
        )

    @staticmethod
    def _read_parameters(invocation: Invocation, text: str) -> str:
        """Read each ``Get-SSMParameter -Name '...'`` a script names; the first problem, or ''."""
        backend = ssm_backends[invocation.command.account_id][invocation.command.region]
        for name in _PARAMETER_READ_RE.findall(text):
            parameter = backend.get_parameter(name)
            if parameter is None:
                return f"ParameterNotFound: {name}"
            value = parameter.decrypt(parameter.value)
            if value is None:
                return f"the value of {name} could not be decrypted"
            invocation.parameters_read[name] = value
        return ""

    @staticmethod
    def _record(invocation: Invocation, result: ScriptResult) -> None:
        if result.timed_out:
            invocation.finish(TIMED_OUT, "ExecutionTimedOut", result.exit_code, result.stdout, result.stderr)
        elif result.cancelled:
            invocation.finish(CANCELLED, CANCELLED, result.exit_code, result.stdout, result.stderr)
        elif result.exit_code == 0:
            invocation.finish(SUCCESS, SUCCESS, 0, result.stdout, result.stderr)
        else:
            # The agent appends this line to a failed script's standard error.
            separator = "\n" if result.stderr and not result.stderr.endswith("\n") else ""
            stderr = f"{result.stderr}{separator}failed to run commands: exit status {result.exit_code}"
            invocation.finish(FAILED, FAILED, result.exit_code, result.stdout, stderr)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aws_time_text(moment: dt.datetime | None) -> str:
    """GetCommandInvocation gives its times as strings, e.g. 2026-11-24T21:20:03.123Z."""
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _elapsed_text(started: dt.datetime | None, ended: dt.datetime | None) -> str:
    if started is None or ended is None:
        return ""
    return f"PT{(ended - started).total_seconds():.3f}S"
