"""GetContextKeysForPrincipalPolicy, as the IAM API Reference documents it.

"All of the context keys referenced in all the IAM policies that are attached to the specified
IAM entity", a user's groups' policies included, plus any given in ``PolicyInputList``; a
permissions boundary is no policy attached to the entity, so its keys are not listed. The
portal's role may call it on users and roles (its policy says so, and devcloud enforces it).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.devcloud.helpers import Aws


def policy(*statements: dict[str, Any], version: str = "2012-10-17") -> str:
    return json.dumps({"Version": version, "Statement": list(statements)})


def keys(iam: Any, arn: str, **extra: Any) -> list[str]:
    return list(iam.get_context_keys_for_principal_policy(PolicySourceArn=arn, **extra)["ContextKeyNames"])


def test_a_user_s_keys_include_its_groups_and_managed_policies_but_not_its_boundary(aws: Aws) -> None:
    iam = aws.client("iam")
    suffix = uuid.uuid4().hex[:8]
    name, group = f"keys-{suffix}", f"keys-group-{suffix}"
    by_env = {
        "Effect": "Allow",
        "Action": "ssm:StartSession",
        "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*",
        "Condition": {
            "StringEqualsIfExists": {"ssm:resourceTag/Env": "dev"},
            "StringLike": {"aws:ResourceTag/Owner": "${aws:PrincipalTag/team, 'none'}"},
        },
    }
    protected = {
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {"Null": {"ssm:resourceTag/PROTECTED": "false"}},
    }
    managed = iam.create_policy(
        PolicyName=f"by-region-{suffix}",
        PolicyDocument=policy(
            {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
        ),
    )["Policy"]["Arn"]
    fenced = {
        "Effect": "Allow",
        "Action": "*",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:ResourceTag/Fence": "y"}},
    }
    boundary = iam.create_policy(PolicyName=f"fence-{suffix}", PolicyDocument=policy(fenced))["Policy"]["Arn"]
    arn = iam.create_user(UserName=name, PermissionsBoundary=boundary)["User"]["Arn"]
    iam.put_user_policy(UserName=name, PolicyName="ByEnv", PolicyDocument=policy(by_env))
    iam.attach_user_policy(UserName=name, PolicyArn=managed)
    iam.create_group(GroupName=group)
    iam.put_group_policy(GroupName=group, PolicyName="Protected", PolicyDocument=policy(protected))
    iam.add_user_to_group(GroupName=group, UserName=name)

    assert keys(iam, arn) == [
        "aws:PrincipalTag/team",
        "aws:ResourceTag/Owner",
        "aws:SecureTransport",
        "aws:username",
        "ssm:resourceTag/Env",
        "ssm:resourceTag/PROTECTED",
    ]
    # A group alone: its own policies; and those given with the question are added.
    group_arn = iam.get_group(GroupName=group)["Group"]["Arn"]
    extra = policy(
        {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
    )
    assert keys(iam, group_arn, PolicyInputList=[extra]) == ["aws:SourceIp", "ssm:resourceTag/PROTECTED"]


def test_an_old_version_policy_has_no_variables_and_a_role_is_asked_alike(aws: Aws) -> None:
    iam = aws.client("iam")
    name = f"keys-role-{uuid.uuid4().hex[:8]}"
    trust = policy({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"})
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    old = {
        "Effect": "Allow",
        "Action": "ssm:StartSession",
        "Resource": "arn:aws:ec2:*:*:instance/${aws:username}",
        "Condition": {"StringEquals": {"ssm:resourceTag/env": "${aws:username}"}},
    }
    assert keys(iam, arn) == []
    # moto's IAM refuses to store a 2008-10-17 policy; one given with the question is read as AWS reads it.
    assert keys(iam, arn, PolicyInputList=[policy(old, version="2008-10-17")]) == ["ssm:resourceTag/env"]


def test_an_unknown_principal_is_refused(aws: Aws) -> None:
    with pytest.raises(ClientError) as missing:
        keys(aws.client("iam"), "arn:aws:iam::123456789012:user/nobody-at-all")
    assert missing.value.response["Error"]["Code"] == "NoSuchEntity"


def test_a_custom_policy_s_keys_are_those_it_references(aws: Aws) -> None:
    """GetContextKeysForCustomPolicy: the keys of the documents given, read as for a principal's."""
    iam = aws.client("iam")
    fence = policy(
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"Null": {"aws:ResourceTag/Protected": "false"}},
        },
    )
    other = policy({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::${aws:username}/*"})
    found = iam.get_context_keys_for_custom_policy(PolicyInputList=[fence, other])["ContextKeyNames"]
    assert found == ["aws:ResourceTag/Protected", "aws:username"]
    with pytest.raises(ClientError) as malformed:
        iam.get_context_keys_for_custom_policy(PolicyInputList=["not json"])
    assert malformed.value.response["Error"]["Code"] == "MalformedPolicyDocument"


def test_the_portal_role_may_ask_about_people_and_read_policies_only(aws: Aws, manifest: dict[str, Any]) -> None:
    prod = next(account for account in manifest["accounts"] if account["id"] == "111111111111")
    iam = aws.assume(prod["role_arn"]).client("iam")
    alice = manifest["principals"]["alice"]["111111111111"]
    assert isinstance(keys(iam, alice), list)
    assert iam.get_user(UserName=alice.rsplit("/", 1)[-1])["User"]["Arn"] == alice
    fence = policy({"Effect": "Allow", "Action": "*", "Resource": "*"})
    assert iam.get_context_keys_for_custom_policy(PolicyInputList=[fence])["ContextKeyNames"] == []
    for refused_call in (
        lambda: iam.list_users(),
        lambda: iam.create_user(UserName=f"intruder-{uuid.uuid4().hex[:8]}"),
        lambda: iam.get_group(GroupName="Admins"),
    ):
        with pytest.raises(ClientError) as refused:
            refused_call()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
