"""One command and its invocations, one per instance, as the API reports them."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from devcloud.localhost import ScriptRun
from devcloud.runcommand import output
from devcloud.runcommand.documents import RunDocument, Script

PENDING = "Pending"
IN_PROGRESS = "InProgress"
SUCCESS = "Success"
FAILED = "Failed"
TIMED_OUT = "TimedOut"
CANCELLING = "Cancelling"
CANCELLED = "Cancelled"
FINISHED = frozenset({SUCCESS, FAILED, TIMED_OUT, CANCELLED})

# What AWS keeps of a plugin's output: GetCommandInvocation and ListCommandInvocations differ
# (``output`` has the agent's rules).
STANDARD_CONTENT_LIMIT = output.MAX_CONTENT_BYTES
PLUGIN_OUTPUT_LIMIT = output.PLUGIN_OUTPUT_LIMIT
DEFAULT_DELIVERY_TIMEOUT = 3600


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

    @property
    def undelivered(self) -> bool:
        """Pending with no agent having picked it up yet (its agent away when it was sent)."""
        return self.status == PENDING and self.run is None

    def expire(self, now: dt.datetime) -> bool:
        """Past the command's ExpiresAfter, an invocation still Pending or InProgress times out
        (AWS: DeliveryTimedOut, "for all invocations that have the status InProgress, Pending, or
        Delayed"); a script still running is left to its own execution timeout, its result unheard.
        Whether it did."""
        if self.status not in (PENDING, IN_PROGRESS) or now < self.command.expires_after:
            return False
        self.status, self.status_details = TIMED_OUT, "DeliveryTimedOut"
        if self.started is not None:
            self.ended = now
        return True

    def plugin_output(self) -> str:
        return output.plugin_output(self.stdout, self.stderr)

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
            "StandardOutputContent": output.standard_output_content(self.stdout) if finished else "",
            "StandardOutputUrl": "",
            "StandardErrorContent": output.standard_error_content(self.stderr) if finished else "",
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
    script: Script
    targets: list[dict[str, Any]]
    instance_ids: list[str]
    timeout_seconds: int
    requested: dt.datetime
    options: dict[str, Any]  # echoed back as given: concurrency, S3 output, service role
    invocations: dict[str, Invocation] = field(default_factory=dict)
    visible_at: float = 0.0  # time.monotonic() from which its invocations are listed and answered

    @property
    def visible(self) -> bool:
        return time.monotonic() >= self.visible_at

    @property
    def expires_after(self) -> dt.datetime:
        """AWS: "calculated based on the total timeout for the overall command": a command not
        picked up by its agent within the delivery timeout (TimeoutSeconds) plus the script's
        execution timeout becomes DeliveryTimedOut (User Guide, "Understanding command statuses")."""
        return self.requested + dt.timedelta(seconds=self.timeout_seconds + self.script.execution_timeout)

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
