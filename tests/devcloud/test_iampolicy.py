"""The policy evaluator on its own: the parts of IAM's rules the API tests do not reach."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devcloud.iampolicy import PolicySource, evaluate


def source(*statements: dict[str, Any]) -> list[PolicySource]:
    return [PolicySource("p", "none", json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))]


def test_not_resource_excludes_the_named_resources() -> None:
    policies = source({"Effect": "Allow", "Action": "ssm:*", "NotResource": "arn:aws:ec2:*:*:instance/i-secret*"})

    assert evaluate(policies, "ssm:StartSession", "arn:aws:ec2:r:1:instance/i-open", {}).decision == "allowed"
    assert evaluate(policies, "ssm:StartSession", "arn:aws:ec2:r:1:instance/i-secret1", {}).decision == "implicitDeny"


def test_resources_are_case_sensitive_and_actions_are_not() -> None:
    policies = source({"Effect": "Allow", "Action": "SSM:startsession", "Resource": "arn:aws:ec2:*:*:instance/i-A*"})

    assert evaluate(policies, "ssm:StartSession", "arn:aws:ec2:r:1:instance/i-Ab", {}).decision == "allowed"
    assert evaluate(policies, "ssm:StartSession", "arn:aws:ec2:r:1:instance/i-ab", {}).decision == "implicitDeny"


@pytest.mark.parametrize(
    ("condition", "context", "decision"),
    [
        ({"StringEqualsIfExists": {"ssm:resourceTag/Team": "red"}}, {}, "allowed"),
        ({"StringEquals": {"ssm:resourceTag/Team": "red"}}, {}, "implicitDeny"),
        ({"StringNotEquals": {"ssm:resourceTag/Team": "blue"}}, {}, "allowed"),
        ({"StringNotEquals": {"ssm:resourceTag/Team": "blue"}}, {"ssm:resourceTag/Team": ["blue"]}, "implicitDeny"),
        ({"Null": {"ssm:resourceTag/Team": "true"}}, {}, "allowed"),
        ({"Null": {"ssm:resourceTag/Team": "false"}}, {}, "implicitDeny"),
        ({"ForAllValues:StringLike": {"aws:TagKeys": "team-*"}}, {"aws:TagKeys": ["team-a", "team-b"]}, "allowed"),
        ({"ForAllValues:StringLike": {"aws:TagKeys": "team-*"}}, {"aws:TagKeys": ["team-a", "owner"]}, "implicitDeny"),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": "owner"}}, {"aws:TagKeys": ["team-a", "owner"]}, "allowed"),
        ({"Bool": {"aws:MultiFactorAuthPresent": "true"}}, {"aws:multifactorauthpresent": ["TRUE"]}, "allowed"),
        ({"NumericLessThan": {"aws:EpochTime": "1"}}, {"aws:EpochTime": ["0"]}, "implicitDeny"),
    ],
)
def test_condition_operators(condition: dict[str, Any], context: dict[str, list[str]], decision: str) -> None:
    policies = source({"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*", "Condition": condition})

    assert evaluate(policies, "ssm:StartSession", "*", context).decision == decision


def test_a_single_statement_object_and_a_deny_without_an_allow() -> None:
    document = json.dumps({"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}})

    result = evaluate([PolicySource("lock", "user", document)], "ssm:StartSession", "*", {})

    assert (result.decision, [m.policy_id for m in result.matched]) == ("explicitDeny", ["lock"])
