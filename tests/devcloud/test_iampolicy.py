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


@pytest.mark.parametrize(
    ("condition", "decision"),
    [
        # ForAnyValue is false when the key is not in the request, whatever the operator (IAM User
        # Guide, "Single-valued vs. multivalued context keys"): negated and IfExists ones too.
        ({"ForAnyValue:StringNotEquals": {"ssm:resourceTag/Env": "prod"}}, "implicitDeny"),
        ({"ForAnyValue:StringEqualsIfExists": {"ssm:resourceTag/Env": "dev"}}, "implicitDeny"),
        ({"ForAnyValue:StringLike": {"ssm:resourceTag/Env": "*"}}, "implicitDeny"),
        # ForAllValues is true then (there is no value it fails on), and so is a plain IfExists.
        ({"ForAllValues:StringEquals": {"ssm:resourceTag/Env": "dev"}}, "allowed"),
        ({"ForAllValues:StringNotEqualsIfExists": {"ssm:resourceTag/Env": "prod"}}, "allowed"),
        ({"StringEqualsIfExists": {"ssm:resourceTag/Env": "dev"}}, "allowed"),
        ({"StringNotEqualsIfExists": {"ssm:resourceTag/Env": "prod"}}, "allowed"),
    ],
)
def test_a_key_missing_from_the_request(condition: dict[str, Any], decision: str) -> None:
    policies = source({"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*", "Condition": condition})

    assert evaluate(policies, "ssm:StartSession", "*", {}).decision == decision


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEqualsIfExists": {"ssm:resourceTag/Env": "dev"}},
        {"Null": {"ssm:resourceTag/Env": "false"}},
        {"ForAnyValue:StringLikeIfExists": {"ssm:resourceTag/Env": "d*"}},
    ],
)
def test_keys_of_if_exists_and_null_conditions_are_reported_missing_too(condition: dict[str, Any]) -> None:
    """The answer depends on them (left out, an IfExists Allow matches a prod instance): so they are needed."""
    policies = source({"Effect": "Deny", "Action": "ssm:StartSession", "Resource": "*", "Condition": condition})

    assert evaluate(policies, "ssm:StartSession", "*", {}).missing_context == ["ssm:resourceTag/Env"]
    given = evaluate(policies, "ssm:StartSession", "*", {"ssm:resourceTag/Env": ["prod"]})
    assert given.missing_context == []


def test_a_single_statement_object_and_a_deny_without_an_allow() -> None:
    document = json.dumps({"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}})

    result = evaluate([PolicySource("lock", "user", document)], "ssm:StartSession", "*", {})

    assert (result.decision, [m.policy_id for m in result.matched]) == ("explicitDeny", ["lock"])


# --- policy variables (IAM User Guide, reference_policies_variables) --------------------------

SESSIONS = "arn:aws:ssm:us-east-1:111111111111:session"


def versioned(version: str | None, *statements: dict[str, Any]) -> list[PolicySource]:
    document: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        document["Version"] = version
    return [PolicySource("p", "none", json.dumps(document))]


def allow_on(resource: str, version: str | None = "2012-10-17") -> list[PolicySource]:
    return versioned(version, {"Effect": "Allow", "Action": "ssm:TerminateSession", "Resource": resource})


def decide(policies: list[PolicySource], resource: str, **context: list[str]) -> str:
    return evaluate(policies, "ssm:TerminateSession", resource, context).decision


def test_a_variable_in_a_resource_takes_the_request_s_value() -> None:
    own = allow_on("arn:aws:ssm:*:*:session/${aws:username}-*")

    assert decide(own, f"{SESSIONS}/alice-0123456789abcdef0", **{"aws:username": ["alice"]}) == "allowed"
    assert decide(own, f"{SESSIONS}/bob-0123456789abcdef0", **{"aws:username": ["alice"]}) == "implicitDeny"
    # Context keys are case-insensitive, the value is used as given.
    assert decide(own, f"{SESSIONS}/Alice-1", **{"AWS:UserName": ["Alice"]}) == "allowed"


def test_a_variable_without_a_value_matches_nothing_and_is_reported_when_it_could_have() -> None:
    own = allow_on("arn:aws:ssm:*:*:session/${aws:userid}-*")

    result = evaluate(own, "ssm:TerminateSession", f"{SESSIONS}/AIDAEXAMPLE-1", {})
    assert (result.decision, result.missing_context) == ("implicitDeny", ["aws:userid"])
    # Not even the text of the variable itself matches.
    assert decide(own, f"{SESSIONS}/${{aws:userid}}-1") == "implicitDeny"
    # A resource no value could have matched does not need the key.
    elsewhere = evaluate(own, "ssm:TerminateSession", "arn:aws:ec2:us-east-1:111111111111:instance/i-1", {})
    assert elsewhere.missing_context == []
    # A key with several values cannot be a variable's value.
    assert decide(own, f"{SESSIONS}/a-1", **{"aws:userid": ["a", "b"]}) == "implicitDeny"


@pytest.mark.parametrize("version", ["2008-10-17", None])
def test_older_policies_take_variables_as_text(version: str | None) -> None:
    own = allow_on("arn:aws:ssm:*:*:session/${aws:username}-*", version)

    assert decide(own, f"{SESSIONS}/alice-1", **{"aws:username": ["alice"]}) == "implicitDeny"
    assert decide(own, f"{SESSIONS}/${{aws:username}}-1", **{"aws:username": ["alice"]}) == "allowed"


def test_escapes_and_defaults() -> None:
    star = allow_on("arn:aws:s3:::bucket/${*}${?}${$}")
    assert decide(star, "arn:aws:s3:::bucket/*?$") == "allowed"
    assert decide(star, "arn:aws:s3:::bucket/ab$") == "implicitDeny"  # ${*} and ${?} are not wildcards

    defaulted = allow_on("arn:aws:ssm:*:*:session/${aws:username, 'it''s'}-*")
    assert decide(defaulted, f"{SESSIONS}/it's-1") == "allowed"
    assert decide(defaulted, f"{SESSIONS}/alice-1", **{"aws:username": ["alice"]}) == "allowed"


def test_a_replaced_value_is_literal_and_only_the_resource_part_has_variables() -> None:
    by_team = allow_on("arn:aws:ssm:*:*:session/${aws:PrincipalTag/team}-*")
    assert decide(by_team, f"{SESSIONS}/*-1", **{"aws:PrincipalTag/team": ["*"]}) == "allowed"
    assert decide(by_team, f"{SESSIONS}/red-1", **{"aws:PrincipalTag/team": ["*"]}) == "implicitDeny"

    in_region = allow_on("arn:aws:ssm:${aws:RequestedRegion}:*:session/*")
    assert decide(in_region, f"{SESSIONS}/x-1", **{"aws:RequestedRegion": ["us-east-1"]}) == "implicitDeny"


@pytest.mark.parametrize(
    ("operator", "context", "decision"),
    [
        ("StringEquals", {"aws:username": ["alice"], "ssm:resourceTag/Owner": ["alice"]}, "allowed"),
        ("StringEquals", {"aws:username": ["alice"], "ssm:resourceTag/Owner": ["bob"]}, "implicitDeny"),
        ("StringEquals", {"ssm:resourceTag/Owner": ["alice"]}, "implicitDeny"),  # no value: equals nothing
        ("StringNotEquals", {"ssm:resourceTag/Owner": ["alice"]}, "allowed"),
        ("StringLike", {"aws:username": ["al*"], "ssm:resourceTag/Owner": ["alice"]}, "implicitDeny"),
        ("StringLike", {"aws:username": ["al*"], "ssm:resourceTag/Owner": ["al*"]}, "allowed"),
    ],
)
def test_variables_in_condition_values(operator: str, context: dict[str, list[str]], decision: str) -> None:
    policies = source(
        {
            "Effect": "Allow",
            "Action": "ssm:StartSession",
            "Resource": "*",
            "Condition": {operator: {"ssm:resourceTag/Owner": "${aws:username}"}},
        }
    )

    result = evaluate(policies, "ssm:StartSession", "*", context)
    assert result.decision == decision
    assert ("aws:username" in result.missing_context) is ("aws:username" not in context)


def test_condition_keys_are_never_replaced() -> None:
    policies = source(
        {
            "Effect": "Allow",
            "Action": "ssm:StartSession",
            "Resource": "*",
            "Condition": {"StringEquals": {"ssm:resourceTag/${aws:username}": "yes"}},
        }
    )
    context = {"aws:username": ["alice"], "ssm:resourceTag/alice": ["yes"]}
    assert evaluate(policies, "ssm:StartSession", "*", context).decision == "implicitDeny"


# --- permissions boundaries ------------------------------------------------------------------


def test_a_boundary_must_allow_too_and_its_deny_wins() -> None:
    everything = source({"Effect": "Allow", "Action": "*", "Resource": "*"})
    describe_only = versioned("2012-10-17", {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"})
    no_sessions = versioned(
        "2012-10-17",
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ssm:StartSession", "Resource": "*"},
    )

    capped = evaluate(everything, "ssm:StartSession", "*", {}, boundary=describe_only)
    assert (capped.decision, capped.matched, capped.allowed_by_boundary) == ("implicitDeny", [], False)
    inside = evaluate(everything, "ec2:DescribeInstances", "*", {}, boundary=describe_only)
    assert (inside.decision, inside.allowed_by_boundary) == ("allowed", True)
    # The boundary grants nothing by itself.
    assert evaluate([], "ec2:DescribeInstances", "*", {}, boundary=describe_only).decision == "implicitDeny"
    assert evaluate(everything, "ssm:StartSession", "*", {}, boundary=no_sessions).decision == "explicitDeny"
    # No boundary at all: nothing to cap.
    assert evaluate(everything, "ssm:StartSession", "*", {}).allowed_by_boundary is None
