"""The ARNs of the AWS resources Passport names, built in one place.

The IAM check asks about them (``requests_app.iam``, ``Instance.arn``) and scoped credentials'
session policies allow them (``fleet.aws.credentials``): both must name a resource alike, or a
check would pass on one ARN while the policy allowed another. Formats from the Service Authorization Reference
(Amazon EC2 and AWS Systems Manager resource types). An ARN starts with its partition, which
follows from the region (``partition_of``): ``aws``, or ``aws-us-gov`` for GovCloud, ``aws-cn``
for China and so on; an ARN in the wrong partition names nothing, so a policy allowing it allows
nothing and a check asking about it answers about nothing.
"""

from __future__ import annotations

import re

# Each partition's region names, most specific first (the names botocore's partitions table
# gives each partition: ``us-gov-west-1``, ``cn-north-1``, ``us-iso-east-1`` ...).
_PARTITIONS = tuple(
    (re.compile(pattern, re.ASCII), partition)
    for pattern, partition in (
        (r"us-gov-[a-z]+-\d{1,2}", "aws-us-gov"),
        (r"us-iso-[a-z]+-\d{1,2}", "aws-iso"),
        (r"us-isob-[a-z]+-\d{1,2}", "aws-iso-b"),
        (r"us-isof-[a-z]+-\d{1,2}", "aws-iso-f"),
        (r"eu-isoe-[a-z]+-\d{1,2}", "aws-iso-e"),
        (r"eusc-de-[a-z]+-\d{1,2}", "aws-eusc"),
        (r"cn-[a-z]+-\d{1,2}", "aws-cn"),
        (r"[a-z]{2}-[a-z]+-\d{1,2}", "aws"),
    )
)


def partition_of(region: str) -> str:
    """The partition a region's resources are named in; ValueError for anything that is not a region name.

    Nothing but a region name gets into an ARN: a ``*``, a ``:`` or a newline there would
    make a session policy's resource a wider pattern, or another resource.
    """
    for pattern, partition in _PARTITIONS:
        if pattern.fullmatch(region):
            return partition
    raise ValueError(f"{region[:64]!r} is not an AWS region name")


def instance_arn(*, region: str, account_id: str, instance_id: str) -> str:
    """An EC2 instance: ``arn:<partition>:ec2:<region>:<account>:instance/<instance id>``."""
    return f"arn:{partition_of(region)}:ec2:{region}:{account_id}:instance/{instance_id}"


def document_arn(*, region: str, name: str) -> str:
    """An AWS-owned SSM document (the session documents): its region, and no account."""
    return f"arn:{partition_of(region)}:ssm:{region}::document/{name}"


def session_arn(*, region: str, account_id: str, session_id: str) -> str:
    """A Session Manager session; ``session_id`` may be an IAM pattern (``<owner>-*``)."""
    return f"arn:{partition_of(region)}:ssm:{region}:{account_id}:session/{session_id}"
