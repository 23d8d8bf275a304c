"""Helpers for the devcloud tests: boto3 clients and Run Command polling."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import boto3

REGION = "us-east-1"
LINUX_IMAGE = "ami-760aaa0f"  # moto's Amazon Linux image
WINDOWS_IMAGE = "ami-03cf127a"  # moto's Windows Server 2016 image
FINISHED = {"Success", "Failed", "TimedOut", "Cancelled"}


@dataclass
class Aws:
    """boto3 clients against the devcloud, with moto's default account or an assumed role."""

    endpoint_url: str
    credentials: dict[str, str]
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def client(self, service: str, region: str = REGION) -> Any:
        """One client per service and region: building a boto3 client costs more than most calls."""
        if (service, region) not in self._clients:
            self._clients[service, region] = boto3.client(
                service, endpoint_url=self.endpoint_url, region_name=region, **self.credentials
            )
        return self._clients[service, region]

    def assume(self, role_arn: str, session_name: str = "tests") -> Aws:
        creds = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
        return Aws(
            self.endpoint_url,
            {
                "aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"],
            },
        )

    def launch(self, name: str, *, region: str = REGION, image_id: str = LINUX_IMAGE, **tags: str) -> str:
        """Start one EC2 instance tagged Name=name plus ``tags``; return its id."""
        all_tags = {"Name": name, **tags}
        reservation = self.client("ec2", region).run_instances(
            ImageId=image_id,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}
            ],
        )
        return reservation["Instances"][0]["InstanceId"]

    def launch_local(self, name: str) -> str:
        """A local host: an instance whose Run Command scripts really run on this machine."""
        return self.launch(name, **{"devcloud:local": "true"})


def send_script(ssm: Any, instance_id: str, *commands: str, **parameters: list[str]) -> str:
    command = ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": list(commands), **parameters},
    )["Command"]
    return command["CommandId"]


def wait_for(ssm: Any, command_id: str, instance_id: str, timeout: float = 20) -> tuple[dict[str, Any], list[str]]:
    """Poll GetCommandInvocation until it finishes; return it and every status seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        if not seen or seen[-1] != invocation["Status"]:
            seen.append(invocation["Status"])
        if invocation["Status"] in FINISHED:
            return invocation, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{command_id} on {instance_id} still {seen} after {timeout}s")
        time.sleep(0.05)


def run(ssm: Any, instance_id: str, *commands: str, **parameters: list[str]) -> dict[str, Any]:
    """Send a shell script and return its finished invocation."""
    invocation, _ = wait_for(ssm, send_script(ssm, instance_id, *commands, **parameters), instance_id)
    return invocation
