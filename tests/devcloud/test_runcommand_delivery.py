"""Run Command to an agent that is away: kept Pending, delivered once the agent is back, timed out
after the command's total timeout, as AWS documents it.

- API, Command.ExpiresAfter: "If a command expires, it changes status to DeliveryTimedOut for all
  invocations that have the status InProgress, Pending, or Delayed. ExpiresAfter is calculated
  based on the total timeout for the overall command."
- User Guide, "Understanding command statuses", Pending: "If the command isn't received by the agent
  before the length of time passes that is equal to the sum of the Timeout (seconds) parameter and
  the Execution timeout parameter, the status changes to Delivery Timed Out."
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from tests.devcloud.helpers import Aws, send_script, wait_for

AWAY = {"devcloud:ping-status": "ConnectionLost"}


def _back(aws: Aws, instance_id: str) -> None:
    aws.client("ec2").create_tags(Resources=[instance_id], Tags=[{"Key": "devcloud:ping-status", "Value": "Online"}])


def _seconds(command: dict[str, Any]) -> float:
    return float((command["ExpiresAfter"] - command["RequestedDateTime"]).total_seconds())


def test_expires_after_is_the_delivery_timeout_plus_the_execution_timeout(aws: Aws, ssm: Any) -> None:
    offline = aws.launch("expiry", **AWAY)
    command = ssm.send_command(
        InstanceIds=[offline],
        DocumentName="AWS-RunShellScript",
        TimeoutSeconds=60,  # what Passport sends (fleet/aws/runcommand.py)
        Parameters={"commands": ["true"], "executionTimeout": ["300"]},  # Passport's default timeout
    )["Command"]
    assert _seconds(command) == pytest.approx(60 + 300, abs=2)
    # Neither given: 3600 s each (TimeoutSeconds' default, and the document's executionTimeout's).
    command = ssm.send_command(
        InstanceIds=[offline], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]}
    )
    assert _seconds(command["Command"]) == pytest.approx(3600 + 3600, abs=2)


def test_a_command_sent_while_the_agent_is_away_runs_once_the_agent_is_back(aws: Aws, ssm: Any) -> None:
    host = aws.launch("back", **{"devcloud:local": "true", **AWAY})
    command_id = send_script(ssm, host, "echo delivered late")
    time.sleep(0.3)
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=host)["Status"] == "Pending"

    _back(aws, host)  # well within the command's timeout: AWS delivers the command then

    invocation, seen = wait_for(ssm, command_id, host, timeout=15)
    assert invocation["Status"] == "Success", seen
    assert invocation["StandardOutputContent"] == "delivered late\n"
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Success"


def test_a_command_not_delivered_within_its_total_timeout_times_out_and_never_runs(
    aws: Aws, ssm: Any, time_machine: Any
) -> None:
    host = aws.launch("never-back", **{"devcloud:local": "true", **AWAY})
    command = ssm.send_command(
        InstanceIds=[host],
        DocumentName="AWS-RunShellScript",
        TimeoutSeconds=30,  # AWS's least
        Parameters={"commands": ["echo too late"], "executionTimeout": ["5"]},
    )["Command"]
    command_id = command["CommandId"]
    sent = command["RequestedDateTime"]

    time_machine.move_to(sent + timedelta(seconds=32))  # past TimeoutSeconds alone: still Pending
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=host)["Status"] == "Pending"
    time_machine.move_to(sent + timedelta(seconds=36))  # past both
    _back(aws, host)  # too late: nothing is delivered
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=host)
    assert (invocation["Status"], invocation["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")
    assert invocation["StandardOutputContent"] == ""
    listed = ssm.list_commands(CommandId=command_id)["Commands"][0]
    assert (listed["Status"], listed["DeliveryTimedOutCount"], listed["ErrorCount"]) == ("TimedOut", 1, 0)


def test_a_command_cancelled_while_the_agent_is_away_is_not_delivered_when_it_is_back(aws: Aws, ssm: Any) -> None:
    host = aws.launch("cancelled-away", **{"devcloud:local": "true", **AWAY})
    command_id = send_script(ssm, host, "echo should not run")
    ssm.cancel_command(CommandId=command_id, InstanceIds=[host])

    _back(aws, host)

    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=host)
    assert invocation["Status"] == "Cancelled"
    assert invocation["StandardOutputContent"] == ""
