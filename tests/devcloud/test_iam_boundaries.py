"""Permissions boundaries and policy variables, over the IAM API as AWS documents them.

A boundary caps what an entity's identity policies allow (an explicit Deny in either refuses):
SimulatePrincipalPolicy applies the one attached to the user or role, or the one given in
PermissionsBoundaryPolicyInputList instead; a role's boundary caps its sessions' real calls too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.devcloud.helpers import Aws

ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
ACCOUNT = "123456789012"
WEB = f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/i-0123456789abcdef0"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


DESCRIBE_ONLY = policy({"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"})
TRUST = policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"})


def simulate(iam: Any, arn: str, action: str, resource: str = WEB, **extra: Any) -> dict[str, Any]:
    (result,) = iam.simulate_principal_policy(
        PolicySourceArn=arn, ActionNames=[action], ResourceArns=[resource], **extra
    )["EvaluationResults"]
    return result


@pytest.fixture
def names() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def boundary(aws: Aws, names: str) -> Iterator[str]:
    iam = aws.client("iam")
    arn = iam.create_policy(PolicyName=f"describe-only-{names}", PolicyDocument=DESCRIBE_ONLY)["Policy"]["Arn"]
    yield arn


def test_a_role_s_boundary_caps_its_simulated_permissions(aws: Aws, names: str, boundary: str) -> None:
    iam = aws.client("iam")
    role = iam.create_role(RoleName=f"bounded-{names}", AssumeRolePolicyDocument=TRUST, PermissionsBoundary=boundary)
    iam.attach_role_policy(RoleName=f"bounded-{names}", PolicyArn=ADMIN)
    arn = role["Role"]["Arn"]

    capped = simulate(iam, arn, "ssm:StartSession")
    assert (capped["EvalDecision"], capped["MatchedStatements"]) == ("implicitDeny", [])
    assert capped["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}
    inside = simulate(iam, arn, "ec2:DescribeInstances")
    assert inside["EvalDecision"] == "allowed"
    assert inside["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": True}

    # Another boundary given with the question replaces the attached one for the simulation.
    no_sessions = policy(
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ssm:StartSession", "Resource": "*"},
    )
    replaced = dict(PermissionsBoundaryPolicyInputList=[no_sessions])
    assert simulate(iam, arn, "ssm:SendCommand", **replaced)["EvalDecision"] == "allowed"
    assert simulate(iam, arn, "ssm:StartSession", **replaced)["EvalDecision"] == "explicitDeny"

    iam.delete_role_permissions_boundary(RoleName=f"bounded-{names}")
    assert simulate(iam, arn, "ssm:StartSession")["EvalDecision"] == "allowed"
    assert "PermissionsBoundaryDecisionDetail" not in simulate(iam, arn, "ssm:StartSession")


def test_a_user_s_boundary_is_kept_shown_and_applied(aws: Aws, names: str, boundary: str) -> None:
    iam = aws.client("iam")
    arn = iam.create_user(UserName=f"bounded-{names}", PermissionsBoundary=boundary)["User"]["Arn"]
    iam.attach_user_policy(UserName=f"bounded-{names}", PolicyArn=ADMIN)
    shown = {"PermissionsBoundaryType": "PermissionsBoundaryPolicy", "PermissionsBoundaryArn": boundary}
    assert iam.get_user(UserName=f"bounded-{names}")["User"]["PermissionsBoundary"] == shown
    assert simulate(iam, arn, "ssm:StartSession")["EvalDecision"] == "implicitDeny"

    iam.delete_user_permissions_boundary(UserName=f"bounded-{names}")
    assert "PermissionsBoundary" not in iam.get_user(UserName=f"bounded-{names}")["User"]
    assert simulate(iam, arn, "ssm:StartSession")["EvalDecision"] == "allowed"
    iam.put_user_permissions_boundary(UserName=f"bounded-{names}", PermissionsBoundary=boundary)
    assert simulate(iam, arn, "ssm:StartSession")["EvalDecision"] == "implicitDeny"

    with pytest.raises(ClientError) as unknown:
        iam.put_user_permissions_boundary(UserName=f"nobody-{names}", PermissionsBoundary=boundary)
    assert unknown.value.response["Error"]["Code"] == "NoSuchEntity"
    with pytest.raises(ClientError) as invalid:
        iam.put_user_permissions_boundary(
            UserName=f"bounded-{names}", PermissionsBoundary=f"arn:aws:iam::{ACCOUNT}:user/not-a-policy"
        )
    assert invalid.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_a_boundary_naming_no_policy_allows_nothing(aws: Aws, names: str, boundary: str) -> None:
    """devcloud errs on the safe side where the policy behind a boundary cannot be found."""
    iam = aws.client("iam")
    role = iam.create_role(RoleName=f"lost-{names}", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    iam.attach_role_policy(RoleName=f"lost-{names}", PolicyArn=ADMIN)
    iam.put_role_permissions_boundary(
        RoleName=f"lost-{names}", PermissionsBoundary=f"arn:aws:iam::{ACCOUNT}:policy/gone-{names}"
    )
    assert simulate(iam, role, "ec2:DescribeInstances")["EvalDecision"] == "implicitDeny"


def test_a_role_s_boundary_caps_its_sessions_real_calls(aws: Aws, names: str, boundary: str) -> None:
    iam = aws.client("iam")
    arn = iam.create_role(RoleName=f"capped-{names}", AssumeRolePolicyDocument=TRUST, PermissionsBoundary=boundary)[
        "Role"
    ]["Arn"]
    iam.attach_role_policy(RoleName=f"capped-{names}", PolicyArn=ADMIN)
    session = aws.assume(arn, "capped")

    session.client("ec2").describe_instances()
    with pytest.raises(ClientError) as refused:
        session.client("ssm").describe_instance_information()
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "permissions boundary" in refused.value.response["Error"]["Message"]


def test_policy_variables_take_the_context_entries(aws: Aws, names: str) -> None:
    """A Deny on hosts locked for the caller: ``${aws:username}`` is the name sent as context."""
    iam = aws.client("iam")
    name = f"locked-{names}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=ADMIN)
    iam.put_user_policy(
        UserName=name,
        PolicyName="NotOnLockedHosts",
        PolicyDocument=policy(
            {
                "Effect": "Deny",
                "Action": "ssm:StartSession",
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": {"StringEquals": {"ssm:resourceTag/LockedFor": "${aws:username}"}},
            }
        ),
    )

    def decide(locked_for: str, username: str) -> str:
        context = [
            {
                "ContextKeyName": "ssm:resourceTag/LockedFor",
                "ContextKeyType": "string",
                "ContextKeyValues": [locked_for],
            },
            {"ContextKeyName": "aws:username", "ContextKeyType": "string", "ContextKeyValues": [username]},
        ]
        return str(simulate(iam, arn, "ssm:StartSession", ContextEntries=context)["EvalDecision"])

    assert decide(name, name) == "explicitDeny"
    assert decide("someone-else", name) == "allowed"
    # The session documents AWS checks StartSession against: a Deny on one is its own answer.
    iam.put_user_policy(
        UserName=name,
        PolicyName="NoTunnels",
        PolicyDocument=policy(
            {"Effect": "Deny", "Action": "ssm:StartSession", "Resource": "arn:aws:ssm:*::document/AWS-StartPort*"}
        ),
    )
    tunnel = "arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession"
    assert simulate(iam, arn, "ssm:StartSession", tunnel)["EvalDecision"] == "explicitDeny"
    assert simulate(iam, arn, "ssm:StartSession")["EvalDecision"] == "allowed"
