"""The ARNs of the AWS resources Passport names, built in one place.

The IAM check asks about them (``requests_app.iam``, ``Instance.arn``) and scoped credentials'
session policies allow them (``fleet.aws.credentials``): both must name a resource alike, or a
check would pass on one ARN while the policy allowed another. Formats from the Service Authorization Reference
(Amazon EC2 and AWS Systems Manager resource types), in the ``aws`` partition.
"""

from __future__ import annotations


def instance_arn(*, region: str, account_id: str, instance_id: str) -> str:
    """An EC2 instance: ``arn:aws:ec2:<region>:<account>:instance/<instance id>``."""
    return f"arn:aws:ec2:{region}:{account_id}:instance/{instance_id}"


def document_arn(*, region: str, name: str) -> str:
    """An AWS-owned SSM document (the session documents): its region, and no account."""
    return f"arn:aws:ssm:{region}::document/{name}"


def session_arn(*, region: str, account_id: str, session_id: str) -> str:
    """A Session Manager session; ``session_id`` may be an IAM pattern (``<owner>-*``)."""
    return f"arn:aws:ssm:{region}:{account_id}:session/{session_id}"
