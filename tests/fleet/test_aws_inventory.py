"""The inventory against devcloud: an instance's platform is EC2's, whatever its SSM agent reports.

EC2's ``Platform`` is fixed at launch from the image; Systems Manager's ``PlatformType`` is what the
instance's own agent reports (``UpdateInstanceInformation``, with the instance's credentials), which
whoever controls the instance may make say anything. devcloud's ``devcloud:platform`` tag makes its
agent say Windows on a Linux image, as such an instance would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fleet.aws import AwsFleet, clients
from tests.devcloud.helpers import LINUX_IMAGE
from tests.stack import Cloud, account_admin_client

REGION = "us-east-1"


@dataclass(frozen=True)
class Account:
    account_id: str
    role_arn: str


@pytest.fixture
def account(aws: Cloud) -> Iterator[Account]:
    item = next(item for item in aws.manifest["accounts"] if item["name"] == "Acme Production")
    yield Account(account_id=item["id"], role_arn=item["role_arn"])
    clients._credentials.pop(item["role_arn"], None)


@pytest.fixture
def agent_says_windows(aws: Cloud, account: Account) -> Iterator[str]:
    """A Linux instance of the account whose SSM agent reports Windows; terminated afterwards."""
    ec2 = account_admin_client(aws, account.account_id, "ec2")
    (web,) = ec2.describe_instances(InstanceIds=[aws.instance_id("web-1")])["Reservations"][0]["Instances"]
    tags = {"Name": "agent-says-windows", "devcloud:platform": "windows"}
    (launched,) = ec2.run_instances(
        ImageId=LINUX_IMAGE,
        MinCount=1,
        MaxCount=1,
        SubnetId=web["SubnetId"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["Instances"]
    try:
        yield launched["InstanceId"]
    finally:
        ec2.terminate_instances(InstanceIds=[launched["InstanceId"]])


def test_an_agent_that_reports_windows_does_not_make_a_linux_instance_windows(
    aws: Cloud, account: Account, agent_says_windows: str
) -> None:
    ssm = account_admin_client(aws, account.account_id, "ssm")
    (reported,) = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [agent_says_windows]}])[
        "InstanceInformationList"
    ]
    assert reported["PlatformType"] == "Windows"  # what the agent says

    records = {record.instance_id: record for record in AwsFleet(account).describe(REGION)}

    record = records[agent_says_windows]
    assert record.platform == "linux"
    assert record.ssm_managed and record.platform_name.startswith("Microsoft Windows")  # kept as text, shown as such
    # A Windows image is Windows by EC2 itself.
    assert records[aws.instance_id("win-ad-1")].platform == "windows"
    assert records[aws.instance_id("web-1")].platform == "linux"
