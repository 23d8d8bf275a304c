"""DescribeInstanceInformation: SSM's view of moto's EC2 instances."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.devcloud.helpers import WINDOWS_IMAGE, Aws


def describe(ssm: Any, *instance_ids: str) -> dict[str, dict[str, Any]]:
    answer = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": list(instance_ids)}])
    return {info["InstanceId"]: info for info in answer["InstanceInformationList"]}


def test_a_running_instance_is_an_online_linux_node_with_the_latest_agent(aws: Aws, ssm: Any) -> None:
    instance_id = aws.launch("plain-1")
    ec2_instance = aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    info = describe(ssm, instance_id)[instance_id]

    assert info["PingStatus"] == "Online"
    assert info["AgentVersion"] == "3.3.1142.0"
    assert info["IsLatestVersion"] is True
    assert (info["PlatformType"], info["PlatformName"]) == ("Linux", "Amazon Linux")
    assert info["ResourceType"] == "EC2Instance"
    assert info["IPAddress"] == ec2_instance["PrivateIpAddress"]
    assert info["ComputerName"] == ec2_instance["PrivateDnsName"]
    assert info["LastPingDateTime"].year >= 2024


def test_tags_override_agent_version_ping_and_platform(aws: Aws, ssm: Any) -> None:
    legacy = aws.launch("legacy", **{"devcloud:agent-version": "2.3.100.0"})
    lost = aws.launch("lost", **{"devcloud:ping-status": "ConnectionLost"})
    tagged_windows = aws.launch("win-tag", **{"devcloud:platform": "windows"})
    image_windows = aws.launch("win-image", image_id=WINDOWS_IMAGE)

    found = describe(ssm, legacy, lost, tagged_windows, image_windows)

    assert (found[legacy]["AgentVersion"], found[legacy]["IsLatestVersion"]) == ("2.3.100.0", False)
    assert found[lost]["PingStatus"] == "ConnectionLost"
    assert found[tagged_windows]["PlatformType"] == "Windows"
    assert found[image_windows]["PlatformType"] == "Windows"
    assert found[image_windows]["ComputerName"].startswith("EC2AMAZ-")


def test_unmanaged_stopped_and_terminated_instances(aws: Aws, ssm: Any) -> None:
    ec2 = aws.client("ec2")
    unmanaged = aws.launch("unmanaged", **{"devcloud:managed": "false"})
    stopped = aws.launch("stopped")
    terminated = aws.launch("terminated")
    ec2.stop_instances(InstanceIds=[stopped])
    ec2.terminate_instances(InstanceIds=[terminated])

    found = describe(ssm, unmanaged, stopped, terminated)

    assert list(found) == [stopped]
    assert found[stopped]["PingStatus"] == "ConnectionLost"


def test_the_old_filter_list_and_pagination(aws: Aws) -> None:
    # A region of its own, so the other tests' instances do not count.
    region = "eu-west-1"
    ssm = aws.client("ssm", region)
    ids = {aws.launch(f"paged-{n}", region=region) for n in range(7)}

    pages, token = [], None
    while True:
        kwargs = {"NextToken": token} if token else {}
        answer = ssm.describe_instance_information(MaxResults=5, **kwargs)
        pages.append([info["InstanceId"] for info in answer["InstanceInformationList"]])
        token = answer.get("NextToken")
        if not token:
            break
    one = sorted(ids)[0]
    filtered = ssm.describe_instance_information(
        InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": [one]}]
    )

    assert [len(page) for page in pages] == [5, 2]
    assert {i for page in pages for i in page} == ids
    assert [info["InstanceId"] for info in filtered["InstanceInformationList"]] == [one]


def test_each_account_sees_only_its_own_instances(aws: Aws, manifest: dict[str, Any]) -> None:
    prod = aws.assume(manifest["accounts"][0]["role_arn"])
    prod_ids = {i["id"] for i in manifest["instances"] if i["account"] == "111111111111" and i["managed"]}

    seen_by_prod = {
        i["InstanceId"] for i in prod.client("ssm").describe_instance_information()["InstanceInformationList"]
    }
    seen_by_default = {
        i["InstanceId"] for i in aws.client("ssm").describe_instance_information()["InstanceInformationList"]
    }

    assert prod_ids <= seen_by_prod
    assert not seen_by_default & prod_ids


def test_an_unknown_filter_key_is_refused(ssm: Any) -> None:
    with pytest.raises(ClientError) as refused:
        ssm.describe_instance_information(Filters=[{"Key": "IamRole", "Values": ["x"]}])
    assert refused.value.response["Error"]["Code"] == "InvalidFilterKey"
