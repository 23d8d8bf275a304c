"""SSM actions moto lacks or gets wrong, as methods for moto's SimpleSystemManagerResponse.

moto dispatches a JSON-protocol call by its X-Amz-Target action name turned snake_case
(``DescribeInstanceInformation`` -> ``describe_instance_information``), so each function
here becomes a method of that name. They parse and answer; the state lives in
``devcloud.runcommand`` and ``devcloud.sessions``. The session calls and SendCommand check
an assumed role's policies against their real resources (``devcloud.sessionpolicy``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.sts.models import sts_backends

from devcloud import errors, fleet, runcommand, runtime, sessionpolicy
from devcloud.extensions.common import json_body, paginate, parse_time
from devcloud.fleet import ManagedInstance
from devcloud.sessions import SESSION_DOCUMENTS

Response = SimpleSystemManagerResponse

_SEND_COMMAND_OPTIONS = (
    "MaxConcurrency",
    "MaxErrors",
    "OutputS3Region",
    "OutputS3BucketName",
    "OutputS3KeyPrefix",
    "ServiceRoleArn",
    "NotificationConfig",
)


def describe_instance_information(self: Response) -> ActionResult:
    body = json_body(self)
    if body.get("Filters") and body.get("InstanceInformationFilterList"):
        raise errors.SsmValidation("Use either Filters or InstanceInformationFilterList, not both.")
    filters = [(f["Key"], f["Values"]) for f in body.get("Filters") or []]
    filters += [(f["key"], f["valueSet"]) for f in body.get("InstanceInformationFilterList") or []]
    instances = fleet.managed_instances(self.current_account, self.region)
    for key, values in filters:
        instances = [instance for instance in instances if _instance_matches(instance, key, values)]
    page, token = paginate(
        instances, limit=body.get("MaxResults") or 50, token=body.get("NextToken"), error=errors.InvalidNextToken
    )
    return _with_token({"InstanceInformationList": [_instance_information(i) for i in page]}, token)


def send_command(self: Response) -> ActionResult:
    body = json_body(self)
    document = runcommand.DOCUMENTS.get(body.get("DocumentName", ""))
    if document is None:
        raise errors.InvalidDocument(
            f"Document {body.get('DocumentName')!r} does not exist; devcloud runs {sorted(runcommand.DOCUMENTS)}."
        )
    parameters = body.get("Parameters") or {}
    script = runcommand.parse_script(document, parameters)
    instance_ids: list[str] = body.get("InstanceIds") or []
    targets: list[dict[str, Any]] = body.get("Targets") or []
    if bool(instance_ids) == bool(targets):
        raise errors.SsmValidation("Specify either InstanceIds or Targets.")
    # As in AWS: each instance and the document, against the caller's role (and session)
    # policies, before an instance is looked up (targets only name them once resolved).
    if instance_ids:
        _authorize_send_command(self, instance_ids, document.name)
        instances = _instances_by_id(self, instance_ids)
    else:
        instances = _instances_by_targets(self, targets)
        _authorize_send_command(self, [instance.instance_id for instance in instances], document.name)
    command = runtime.active().commands.send(
        account_id=self.current_account,
        region=self.region,
        document=document,
        script=script,
        parameters=parameters,
        comment=body.get("Comment", ""),
        timeout_seconds=body.get("TimeoutSeconds"),
        targets=targets,
        instance_ids=instance_ids,
        instances=instances,
        options={key: body[key] for key in _SEND_COMMAND_OPTIONS if key in body},
    )
    return ActionResult({"Command": command})


def list_commands(self: Response) -> ActionResult:
    body = json_body(self)
    commands = runtime.active().commands.commands(
        self.current_account, self.region, command_id=body.get("CommandId"), instance_id=body.get("InstanceId")
    )
    commands = _apply_command_filters(commands, body.get("Filters") or [])
    page, token = paginate(
        commands, limit=body.get("MaxResults") or 50, token=body.get("NextToken"), error=errors.InvalidNextToken
    )
    return _with_token({"Commands": page}, token)


def get_command_invocation(self: Response) -> ActionResult:
    body = json_body(self)
    invocation = runtime.active().commands.invocation(
        self.current_account, self.region, body.get("CommandId", ""), body.get("InstanceId", ""), body.get("PluginName")
    )
    return ActionResult(invocation)


def list_command_invocations(self: Response) -> ActionResult:
    body = json_body(self)
    invocations = runtime.active().commands.invocations(
        self.current_account,
        self.region,
        command_id=body.get("CommandId"),
        instance_id=body.get("InstanceId"),
        details=bool(body.get("Details")),
    )
    invocations = _apply_command_filters(invocations, body.get("Filters") or [])
    page, token = paginate(
        invocations, limit=body.get("MaxResults") or 50, token=body.get("NextToken"), error=errors.InvalidNextToken
    )
    return _with_token({"CommandInvocations": page}, token)


def cancel_command(self: Response) -> ActionResult:
    body = json_body(self)
    runtime.active().commands.cancel(
        self.current_account, self.region, body.get("CommandId", ""), body.get("InstanceIds") or []
    )
    return ActionResult({})


def start_session(self: Response) -> ActionResult:
    body = json_body(self)
    target = body.get("Target", "")
    named = body.get("DocumentName") or None
    document_name = named or DEFAULT_SESSION_DOCUMENT
    # AWS authorizes before anything else: an instance the caller may not reach is not even looked up.
    _authorize_start_session(self, target, named)
    instance = fleet.managed_instance(self.current_account, self.region, target)
    if instance is None or not instance.online:
        raise errors.TargetNotConnected(f"{target} is not connected.")
    if document_name not in SESSION_DOCUMENTS:
        raise errors.InvalidDocument(f"Document {document_name} does not exist or is not a Session document.")
    session = runtime.active().sessions.start(
        account_id=self.current_account,
        region=self.region,
        target=target,
        document_name=document_name,
        parameters=body.get("Parameters") or {},
        owner=_caller_arn(self),
        reason=body.get("Reason", ""),
    )
    return ActionResult(
        {"SessionId": session.session_id, "TokenValue": session.token_value, "StreamUrl": session.stream_url}
    )


def resume_session(self: Response) -> ActionResult:
    session_id = json_body(self).get("SessionId", "")
    _authorize(self, "ssm:ResumeSession", [_session_arn(self, session_id)])
    session = runtime.active().sessions.resume(self.current_account, session_id)
    return ActionResult(
        {"SessionId": session.session_id, "TokenValue": session.token_value, "StreamUrl": session.stream_url}
    )


def terminate_session(self: Response) -> ActionResult:
    session_id = json_body(self).get("SessionId", "")
    _authorize(self, "ssm:TerminateSession", [_session_arn(self, session_id)])
    runtime.active().sessions.terminate(self.current_account, session_id)
    return ActionResult({"SessionId": session_id})


def describe_sessions(self: Response) -> ActionResult:
    body = json_body(self)
    state = body.get("State")
    if state not in ("Active", "History"):
        raise errors.SsmValidation("State must be Active or History.")
    sessions = runtime.active().sessions.sessions(self.current_account, self.region, active=state == "Active")
    for session_filter in body.get("Filters") or []:
        key, value = session_filter["key"], session_filter["value"]
        sessions = [session for session in sessions if _session_matches(session, key, value)]
    page, token = paginate(
        sessions, limit=body.get("MaxResults") or 20, token=body.get("NextToken"), error=errors.InvalidNextToken
    )
    return _with_token({"Sessions": page}, token)


HANDLERS: dict[str, Callable[[Response], ActionResult]] = {
    function.__name__: function
    for function in (
        describe_instance_information,
        send_command,
        list_commands,
        get_command_invocation,
        list_command_invocations,
        cancel_command,
        start_session,
        resume_session,
        terminate_session,
        describe_sessions,
    )
}


def _with_token(result: dict[str, Any], token: str | None) -> ActionResult:
    if token is not None:
        result["NextToken"] = token
    return ActionResult(result)


def _authorize(self: Response, action: str, resources: list[str]) -> None:
    """Refuse a call of an assumed role whose policies (its own, a session policy) do not allow it on every resource."""
    role = sessionpolicy.assumed_role(self.current_account, self.partition, self.get_access_key())
    if role is None:
        return
    refusal = sessionpolicy.denial(role, self.partition, action, resources, service="ssm")
    if refusal is not None:
        raise refusal


# Session Manager's default document: what a StartSession naming no document runs (a shell as
# ssm-user, or the account's Run As user). Each account has its own, with the account's
# preferences (Systems Manager User Guide, "Start a default shell session by specifying the
# default session document in IAM policies"), so its ARN names the account.
DEFAULT_SESSION_DOCUMENT = "SSM-SessionManagerRunShell"


def _authorize_start_session(self: Response, target: str, named: str | None) -> None:
    """StartSession as AWS authorizes it: the instance, and the document named; with none
    named, the default document only where a policy asks for it
    (``sessionpolicy.default_document_denial``).
    """
    instance = fleet.instance_arn(self.region, self.current_account, target)
    if named is not None:
        _authorize(self, "ssm:StartSession", [instance, _document_arn(self, named)])
        return
    role = sessionpolicy.assumed_role(self.current_account, self.partition, self.get_access_key())
    if role is None:
        return
    default = _document_arn(self, DEFAULT_SESSION_DOCUMENT)
    refusal = sessionpolicy.default_document_denial(role, self.partition, instance, default)
    if refusal is not None:
        raise refusal


def _authorize_send_command(self: Response, instance_ids: list[str], document_name: str) -> None:
    arns = [fleet.instance_arn(self.region, self.current_account, str(instance_id)) for instance_id in instance_ids]
    _authorize(self, "ssm:SendCommand", [*arns, _document_arn(self, document_name)])


def _document_arn(self: Response, name: str) -> str:
    # AWS-owned documents' ARNs name no account; the default session document is the account's own.
    account = self.current_account if name == DEFAULT_SESSION_DOCUMENT else ""
    return f"arn:{self.partition}:ssm:{self.region}:{account}:document/{name}"


def _session_arn(self: Response, session_id: str) -> str:
    return f"arn:{self.partition}:ssm:{self.region}:{self.current_account}:session/{session_id}"


def _caller_arn(self: Response) -> str:
    """The ARN of whoever signed the request: an assumed-role session, an IAM user or moto's default."""
    sts = sts_backends[self.current_account][self.partition]
    return sts.get_caller_identity(self.get_access_key(), self.region)[1]


def _instances_by_id(self: Response, instance_ids: list[str]) -> list[ManagedInstance]:
    """Exactly the named instances; any that SSM does not manage (or whose agent is away, with
    ``fleet.TAG_OFFLINE_REFUSES``) fails the call, as in AWS."""
    found = {i: fleet.managed_instance(self.current_account, self.region, i) for i in dict.fromkeys(instance_ids)}
    unknown = [instance_id for instance_id, instance in found.items() if instance is None or instance.refuses_commands]
    if unknown:
        names = ", ".join(unknown)
        raise errors.InvalidInstanceId(f"Instances [[{names}]] not in a valid state for account {self.current_account}")
    return [instance for instance in found.values() if instance is not None]


def _instances_by_targets(self: Response, targets: list[dict[str, Any]]) -> list[ManagedInstance]:
    """Targets: InstanceIds, tag:<key> or tag-key; several targets must all match."""
    instances = fleet.managed_instances(self.current_account, self.region)
    for target in targets:
        key, values = target.get("Key", ""), target.get("Values") or []
        if key == "InstanceIds":
            instances = [i for i in instances if i.instance_id in values]
        elif key.startswith("tag:"):
            instances = [i for i in instances if i.tags.get(key[4:]) in values]
        elif key == "tag-key":
            instances = [i for i in instances if any(value in i.tags for value in values)]
        else:
            raise errors.SsmValidation(f"Target key {key} is not supported by devcloud.")
    return instances


def _instance_matches(instance: ManagedInstance, key: str, values: list[str]) -> bool:
    if key.startswith("tag:"):
        return instance.tags.get(key[4:]) in values
    if key == "tag-key":
        return any(value in instance.tags for value in values)
    attribute = {
        "InstanceIds": instance.instance_id,
        "AgentVersion": instance.agent_version,
        "PingStatus": instance.ping_status,
        "PlatformTypes": instance.platform_type,
        "ResourceType": "EC2Instance",
    }
    if key not in attribute:
        raise errors.InvalidFilterKey(f"Filter key {key} is not supported by devcloud.")
    return attribute[key] in values


def _instance_information(instance: ManagedInstance) -> dict[str, Any]:
    return {
        "InstanceId": instance.instance_id,
        "PingStatus": instance.ping_status,
        "LastPingDateTime": instance.last_ping,
        "AgentVersion": instance.agent_version,
        "IsLatestVersion": instance.is_latest_version,
        "PlatformType": instance.platform_type,
        "PlatformName": instance.platform_name,
        "PlatformVersion": instance.platform_version,
        "ResourceType": "EC2Instance",
        "IPAddress": instance.ip_address,
        "ComputerName": instance.computer_name,
        "SourceId": instance.instance_id,
        "SourceType": "AWS::EC2::Instance",
    }


def _apply_command_filters(items: list[dict[str, Any]], filters: list[dict[str, str]]) -> list[dict[str, Any]]:
    """ListCommands / ListCommandInvocations filters, on their answers' fields."""
    for command_filter in filters:
        key, value = command_filter["key"], command_filter["value"]
        if key in ("InvokedAfter", "InvokedBefore"):
            moment = _filter_time(value)
            after = key == "InvokedAfter"
            items = [i for i in items if (i["RequestedDateTime"] >= moment) == after]
        elif key == "Status":
            items = [i for i in items if i["Status"] == value]
        elif key == "DocumentName":
            items = [i for i in items if i["DocumentName"] == value]
        elif key == "ExecutionStage":
            complete = value == "Complete"
            items = [i for i in items if (i["Status"] in runcommand.FINISHED) == complete]
        else:
            raise errors.InvalidFilterKey(f"Filter key {key} is not valid.")
    return items


def _session_matches(session: dict[str, Any], key: str, value: str) -> bool:
    if key in ("InvokedAfter", "InvokedBefore"):
        return (session["StartDate"] >= _filter_time(value)) == (key == "InvokedAfter")
    if key not in ("Target", "Owner", "Status", "SessionId"):
        raise errors.InvalidFilterKey(f"Filter key {key} is not supported by devcloud.")
    return session[key] == value


def _filter_time(value: str) -> dt.datetime:
    try:
        return parse_time(value)
    except ValueError:
        raise errors.InvalidFilterValue(f"{value} is not an ISO 8601 time.") from None
