"""Run Command: per-instance targeting, real scripts on local hosts, and their states."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devcloud.server import DevCloud
from fleet.windows_sid import created_account_sid
from tests.devcloud.helpers import WINDOWS_IMAGE, Aws, run, send_script, wait_for


@pytest.fixture(scope="module")
def host(aws: Aws) -> str:
    return aws.launch_local("runner-1")


def test_a_script_is_in_progress_before_it_succeeds_with_its_output(ssm: Any, host: str) -> None:
    command_id = send_script(ssm, host, "echo started", "sleep 1", "echo finished on $(hostname)")

    invocation, seen = wait_for(ssm, command_id, host)

    assert seen[-2:] == ["InProgress", "Success"]
    assert invocation["ResponseCode"] == 0
    assert invocation["StandardOutputContent"] == "started\nfinished on runner-1\n"
    assert invocation["PluginName"] == "aws:runShellScript"
    assert invocation["ExecutionStartDateTime"] < invocation["ExecutionEndDateTime"]
    assert float(invocation["ExecutionElapsedTime"].removeprefix("PT").removesuffix("S")) >= 1


def test_a_failing_script_reports_its_exit_code_and_stderr(ssm: Any, host: str) -> None:
    invocation = run(ssm, host, "echo partial", "echo 'no such thing' >&2", "exit 3")

    assert invocation["Status"] == "Failed"
    assert invocation["ResponseCode"] == 3
    assert invocation["StandardOutputContent"] == "partial\n"
    assert invocation["StandardErrorContent"] == "no such thing\nfailed to run commands: exit status 3"


def test_a_script_over_its_execution_timeout_is_killed_with_its_children(ssm: Any, host: str) -> None:
    marker = f"devcloud-test-{uuid.uuid4().hex}"
    command_id = send_script(
        ssm, host, f"(exec -a {marker} sleep 60) &", "echo waiting", "wait", executionTimeout=["1"]
    )

    invocation, _ = wait_for(ssm, command_id, host)

    assert (invocation["Status"], invocation["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")
    assert invocation["ResponseCode"] == 137
    assert invocation["StandardOutputContent"] == "waiting\n"
    assert not _processes_named(marker)


def test_a_cancelled_script_stops(ssm: Any, host: str) -> None:
    command_id = send_script(ssm, host, "sleep 60")
    while ssm.get_command_invocation(CommandId=command_id, InstanceId=host)["Status"] == "Pending":
        time.sleep(0.05)

    ssm.cancel_command(CommandId=command_id)
    invocation, _ = wait_for(ssm, command_id, host, timeout=5)

    assert invocation["Status"] == "Cancelled"
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Cancelled"


def test_output_is_truncated_like_aws(ssm: Any, host: str) -> None:
    command_id = send_script(ssm, host, "head -c 30000 /dev/zero | tr '\\0' x", "echo boom >&2", "exit 3")
    invocation, _ = wait_for(ssm, command_id, host)
    listed = ssm.list_command_invocations(CommandId=command_id, Details=True)["CommandInvocations"][0]

    # The agent's cut, with its marker; the listing's 2,500 characters keep standard error whole.
    assert invocation["StandardOutputContent"] == "x" * 23_980 + "--output truncated--"
    error = "boom\nfailed to run commands: exit status 3"
    assert invocation["StandardErrorContent"] == error
    output = listed["CommandPlugins"][0]["Output"]
    assert output == "x" * (2_500 - 23 - 24 - len(error)) + "\n---Output truncated---\n----------ERROR-------\n" + error


def test_standard_error_is_cut_at_8000_characters(ssm: Any, host: str) -> None:
    command_id = send_script(ssm, host, "head -c 10000 /dev/zero | tr '\\0' e >&2")
    invocation, _ = wait_for(ssm, command_id, host)
    assert invocation["StandardErrorContent"] == "e" * 8_000


def test_exit_137_without_a_cancel_is_the_agents_timeout(ssm: Any, host: str) -> None:
    command_id = send_script(ssm, host, "exit 137")
    invocation, _ = wait_for(ssm, command_id, host)
    assert (invocation["Status"], invocation["ResponseCode"]) == ("TimedOut", 137)
    assert "failed to run commands" not in invocation["StandardErrorContent"]


def test_only_the_named_instances_are_targeted(aws: Aws, ssm: Any, host: str) -> None:
    wanted, bystander = host, aws.launch("bystander")

    command = ssm.send_command(
        InstanceIds=[wanted], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]}, Comment="only one"
    )["Command"]
    wait_for(ssm, command["CommandId"], wanted)
    invocations = ssm.list_command_invocations(CommandId=command["CommandId"], Details=True)["CommandInvocations"]

    assert command["InstanceIds"] == [wanted]
    assert command["TargetCount"] == 1
    assert [i["InstanceId"] for i in invocations] == [wanted]
    assert invocations[0]["Status"] == "Success"
    assert invocations[0]["Comment"] == "only one"
    assert invocations[0]["CommandPlugins"][0]["Output"] == ""
    assert ssm.list_commands(InstanceId=bystander)["Commands"] == []
    with pytest.raises(ClientError) as missing:
        ssm.get_command_invocation(CommandId=command["CommandId"], InstanceId=bystander)
    assert missing.value.response["Error"]["Code"] == "InvocationDoesNotExist"


def test_a_linux_instance_that_is_not_a_local_host_runs_no_script_and_says_so(aws: Aws, ssm: Any) -> None:
    """devcloud has no machine behind it: rather than a Success with an empty output (which AWS
    would give only for a script that printed nothing), the command fails with devcloud's reason."""
    remote = aws.launch("remote-linux")

    invocation, _ = wait_for(ssm, send_script(ssm, remote, "echo never"), remote)
    listed = ssm.list_command_invocations(CommandId=invocation["CommandId"], Details=True)["CommandInvocations"]

    assert (invocation["Status"], invocation["StatusDetails"], invocation["ResponseCode"]) == ("Failed", "Failed", 1)
    assert invocation["StandardOutputContent"] == ""
    assert "devcloud" in invocation["StandardErrorContent"]
    assert f"{remote} is not a local host" in invocation["StandardErrorContent"]
    assert "not a local host" in listed[0]["CommandPlugins"][0]["Output"]


@pytest.mark.parametrize("kind", ["nonexistent", "unmanaged", "terminated"])
def test_instances_ssm_does_not_manage_are_refused(aws: Aws, ssm: Any, kind: str) -> None:
    known = aws.launch("known")
    if kind == "nonexistent":
        unmanaged = "i-0123456789abcdef0"
    elif kind == "unmanaged":
        unmanaged = aws.launch("unmanaged", **{"devcloud:managed": "false"})
    else:
        unmanaged = aws.launch("terminated")
        aws.client("ec2").terminate_instances(InstanceIds=[unmanaged])

    with pytest.raises(ClientError) as refused:
        ssm.send_command(
            InstanceIds=[known, unmanaged], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]}
        )

    assert refused.value.response["Error"]["Code"] == "InvalidInstanceId"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert unmanaged in refused.value.response["Error"]["Message"]


def test_targets_by_tag(aws: Aws, ssm: Any) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    members = {aws.launch("tagged-a", Team=team), aws.launch("tagged-b", Team=team)}

    command = ssm.send_command(
        Targets=[{"Key": "tag:Team", "Values": [team]}],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["true"]},
    )["Command"]

    assert command["TargetCount"] == 2
    listed = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    assert {i["InstanceId"] for i in listed} == members


def test_documents_and_parameters_are_checked(aws: Aws, ssm: Any) -> None:
    instance = aws.launch("checked")

    def error_code(**kwargs: Any) -> str:
        with pytest.raises(ClientError) as refused:
            ssm.send_command(InstanceIds=[instance], **kwargs)
        return refused.value.response["Error"]["Code"]

    shell = "AWS-RunShellScript"
    assert error_code(DocumentName="AWS-NoSuchDocument", Parameters={"commands": ["true"]}) == "InvalidDocument"
    assert error_code(DocumentName=shell, Parameters={}) == "InvalidParameters"
    assert error_code(DocumentName=shell, Parameters={"commands": ["true"], "bogus": ["1"]}) == "InvalidParameters"
    assert error_code(DocumentName=shell, Parameters={"commands": ["true"], "executionTimeout": ["0"]}) == (
        "InvalidParameters"
    )


def test_powershell_runs_on_windows_and_shell_scripts_do_not(aws: Aws, ssm: Any) -> None:
    windows = aws.launch("win-1", image_id=WINDOWS_IMAGE)

    powershell = ssm.send_command(
        InstanceIds=[windows], DocumentName="AWS-RunPowerShellScript", Parameters={"commands": ["Get-Date"]}
    )["Command"]
    shell = send_script(ssm, windows, "true")

    accepted = ssm.get_command_invocation(CommandId=powershell["CommandId"], InstanceId=windows)
    assert (accepted["Status"], accepted["PluginName"]) == ("Success", "aws:runPowerShellScript")
    assert ssm.get_command_invocation(CommandId=shell, InstanceId=windows)["Status"] == "Failed"


def test_a_windows_script_that_reports_its_accounts_sid_is_answered_with_one(aws: Aws, ssm: Any) -> None:
    """devcloud runs no Windows, but Passport requires the SID line of a create: it is made up, the
    same for an instance and a name at each run, and nothing else is written."""
    windows = aws.launch("win-sid", image_id=WINDOWS_IMAGE)

    def output(*commands: str) -> str:
        sent = ssm.send_command(
            InstanceIds=[windows], DocumentName="AWS-RunPowerShellScript", Parameters={"commands": list(commands)}
        )["Command"]["CommandId"]
        invocation = ssm.get_command_invocation(CommandId=sent, InstanceId=windows)
        assert invocation["Status"] == "Success"
        return str(invocation["StandardOutputContent"])

    reports = ["$user = 'rs-abcdefgh'", 'Write-Output "passport: account sid: $accountSid"']
    first = output(*reports)
    assert first == output(*reports)
    assert created_account_sid(first) is not None
    other = output("$user = 'rs-zyxwvuts'", reports[1])
    assert created_account_sid(other) not in (None, created_account_sid(first))
    assert output("Get-Date") == ""


def test_an_agent_away_can_be_made_to_refuse_commands_as_aws_does(aws: Aws, ssm: Any) -> None:
    away = aws.launch("away", **{"devcloud:ping-status": "ConnectionLost", "devcloud:offline-refuses-commands": "true"})
    with pytest.raises(ClientError) as refused:
        send_script(ssm, away, "true")
    assert refused.value.response["Error"]["Code"] == "InvalidInstanceId"
    # Once its agent is back, the same instance takes commands.
    aws.client("ec2").create_tags(Resources=[away], Tags=[{"Key": "devcloud:ping-status", "Value": "Online"}])
    assert send_script(ssm, away, "true")


def test_a_new_command_can_be_kept_out_of_sight_for_a_moment_as_aws_does(cloud: DevCloud, ssm: Any, host: str) -> None:
    commands = cloud.runtime.commands
    commands.invisible_for = 0.5
    try:
        command_id = send_script(ssm, host, "echo later")
        with pytest.raises(ClientError) as missing:
            ssm.get_command_invocation(CommandId=command_id, InstanceId=host)
        assert missing.value.response["Error"]["Code"] == "InvocationDoesNotExist"
        assert ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"] == []
        time.sleep(0.5)
        invocation, _ = wait_for(ssm, command_id, host)
        assert invocation["StandardOutputContent"] == "later\n"
        assert len(ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"]) == 1
    finally:
        commands.invisible_for = 0.0


def test_an_offline_agent_leaves_the_command_pending(aws: Aws, ssm: Any) -> None:
    offline = aws.launch("offline", **{"devcloud:ping-status": "ConnectionLost"})

    command_id = send_script(ssm, offline, "true")

    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=offline)
    assert (invocation["Status"], invocation["ResponseCode"]) == ("Pending", -1)
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Pending"


def test_list_commands_filters_and_pages(aws: Aws, ssm: Any) -> None:
    instance = aws.launch("listed")
    ids = [send_script(ssm, instance, f"echo {n}") for n in range(3)]

    first = ssm.list_commands(InstanceId=instance, MaxResults=2)
    second = ssm.list_commands(InstanceId=instance, MaxResults=2, NextToken=first["NextToken"])
    complete = ssm.list_commands(InstanceId=instance, Filters=[{"key": "ExecutionStage", "value": "Complete"}])
    executing = ssm.list_commands(InstanceId=instance, Filters=[{"key": "ExecutionStage", "value": "Executing"}])

    assert [c["CommandId"] for c in first["Commands"] + second["Commands"]] == ids[::-1]
    assert "NextToken" not in second
    assert len(complete["Commands"]) == 3
    assert executing["Commands"] == []
    with pytest.raises(ClientError) as unknown:
        ssm.list_commands(CommandId=str(uuid.uuid4()))
    assert unknown.value.response["Error"]["Code"] == "InvalidCommandId"


def _processes_named(marker: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_each_host_of_one_command_sees_its_own_instance_id_and_region_as_the_agent_sets_them(
    aws: Aws, ssm: Any, host: str
) -> None:
    """The agent puts AWS_SSM_INSTANCE_ID and AWS_SSM_REGION_NAME in every script's environment
    (agent/executers: since 2.0); Passport's scripts for several hosts pick their grant by it."""
    other = aws.launch_local("runner-2")
    command = ssm.send_command(
        InstanceIds=[host, other],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ['echo "$AWS_SSM_INSTANCE_ID $AWS_SSM_REGION_NAME"']},
    )["Command"]
    for instance_id in (host, other):
        invocation, _ = wait_for(ssm, command["CommandId"], instance_id)
        assert invocation["StandardOutputContent"] == f"{instance_id} {ssm.meta.region_name}\n"


def test_a_standard_parameter_over_4_kb_is_refused_as_aws_does(ssm: Any) -> None:
    name = f"/passport/handoff/{uuid.uuid4()}"
    with pytest.raises(ClientError) as refused:
        ssm.put_parameter(Name=name, Value="x" * 5_000, Type="SecureString", Overwrite=True)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "4096" in refused.value.response["Error"]["Message"]
    ssm.put_parameter(Name=name, Value="x" * 4_096, Type="SecureString", Overwrite=True)
    ssm.put_parameter(Name=name, Value="x" * 5_000, Type="SecureString", Overwrite=True, Tier="Advanced")
    ssm.delete_parameter(Name=name)


def test_a_windows_hand_off_under_a_key_not_enabled_fails_as_the_instance_s_read_would(aws: Aws, ssm: Any) -> None:
    """The instance reads its hand-off decrypted: KMS refuses a key disabled or pending deletion since
    the portal stored the value (InvalidKeyId), so Get-SSMParameter fails and the script with it."""
    windows, kms = aws.launch("win-keys", image_id=WINDOWS_IMAGE), aws.client("kms")

    def read(name: str) -> dict[str, Any]:
        command = ssm.send_command(
            InstanceIds=[windows],
            DocumentName="AWS-RunPowerShellScript",
            Parameters={"commands": [f"$p = Get-SSMParameter -Name '{name}' -WithDecryption $true"]},
        )["Command"]
        return wait_for(ssm, command["CommandId"], windows)[0]

    for state in ("disabled", "pending deletion"):
        key = kms.create_key(Description=f"hand-off {state}")["KeyMetadata"]["KeyId"]
        name = f"/passport/handoff/{uuid.uuid4().hex[:8]}"
        aws.client("ssm").put_parameter(Name=name, Value="s3cret", Type="SecureString", KeyId=key)
        assert read(name)["Status"] == "Success"
        if state == "disabled":
            kms.disable_key(KeyId=key)
        else:
            kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        invocation = read(name)
        assert invocation["Status"] == "Failed", state
        assert "InvalidKeyId" in invocation["StandardErrorContent"]
        assert f"{key} is {state}" in invocation["StandardErrorContent"]
        assert "s3cret" not in invocation["StandardErrorContent"] + invocation["StandardOutputContent"]
