"""ARNs carry their region's partition: GovCloud and China accounts are asked about, and allowed, their own."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from moto.utilities.utils import get_partition

from accounts.models import AwsAccount
from fleet.arns import document_arn, instance_arn, partition_of, session_arn
from fleet.aws.credentials import scoped_session_policy
from requests_app.models import Instance

INSTANCE_ID = "i-0123456789abcdef0"
ACCOUNT_ID = "123456789012"


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("ap-southeast-2", "aws"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-gov-east-1", "aws-us-gov"),
        ("cn-north-1", "aws-cn"),
        ("cn-northwest-1", "aws-cn"),
    ],
)
def test_the_partition_follows_from_the_region(region: str, partition: str) -> None:
    assert partition_of(region) == partition == get_partition(region)  # as AWS (and devcloud's moto) name them


@pytest.mark.parametrize(
    "region",
    ["", "*", "us-east-1:*", "us-east-1\n", "us-east-1/../", "US-EAST-1", "us-east-*", "us-gov-west-1 ", "cn-北-1"],
)
def test_anything_but_a_region_name_is_refused(region: str) -> None:
    with pytest.raises(ValueError, match="is not an AWS region name"):
        partition_of(region)
    with pytest.raises(ValueError):
        instance_arn(region=region, account_id=ACCOUNT_ID, instance_id=INSTANCE_ID)
    with pytest.raises(ValueError):
        document_arn(region=region, name="AWS-StartSSHSession")
    with pytest.raises(ValueError):
        session_arn(region=region, account_id=ACCOUNT_ID, session_id="alice-*")


@pytest.mark.parametrize("region", ["us-gov-west-1", "cn-north-1"])
def test_arns_asked_about_and_allowed_carry_the_regions_partition(region: str) -> None:
    partition = get_partition(region)
    instance = Instance(region=region, instance_id=INSTANCE_ID, account=AwsAccount(account_id=ACCOUNT_ID))
    assert instance.arn == f"arn:{partition}:ec2:{region}:{ACCOUNT_ID}:instance/{INSTANCE_ID}"
    assert document_arn(region=region, name="AWS-StartSSHSession").startswith(f"arn:{partition}:ssm:{region}::")
    assert session_arn(region=region, account_id=ACCOUNT_ID, session_id="a-*").startswith(f"arn:{partition}:ssm:")
    policy = json.loads(
        scoped_session_policy(
            account_id=ACCOUNT_ID,
            instances=[(region, INSTANCE_ID)],
            role_session_name="passport-r1-u1",
            not_after=datetime(2030, 1, 1, tzinfo=UTC),
        )
    )
    resources = [resource for statement in policy["Statement"] for resource in statement["Resource"]]
    assert resources and all(resource.startswith(f"arn:{partition}:") for resource in resources), resources


def test_a_session_policy_over_two_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="different AWS partitions"):
        scoped_session_policy(
            account_id=ACCOUNT_ID,
            instances=[("us-east-1", INSTANCE_ID), ("us-gov-west-1", INSTANCE_ID)],
            role_session_name="passport-r1-u1",
            not_after=datetime(2030, 1, 1, tzinfo=UTC),
        )
