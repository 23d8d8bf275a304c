"""SimulatePrincipalPolicy evaluates the principal's real policies in moto's IAM."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.devcloud.helpers import Aws

PROD, STAGING = "111111111111", "222222222222"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def instance_arn(account: str, instance_id: str) -> str:
    return f"arn:aws:ec2:us-east-1:{account}:instance/{instance_id}"


def decisions(iam: Any, principal_arn: str, actions: list[str], resources: list[str] | None = None) -> list[tuple]:
    kwargs = {"ResourceArns": resources} if resources else {}
    results = iam.simulate_principal_policy(PolicySourceArn=principal_arn, ActionNames=actions, **kwargs)
    return [(r["EvalActionName"], r["EvalResourceName"], r["EvalDecision"]) for r in results["EvaluationResults"]]


@pytest.fixture(scope="module")
def seeded(aws: Aws, manifest: dict[str, Any]) -> dict[str, Any]:
    """IAM clients per seeded account and the demo instances by name."""
    roles = {account["id"]: account["role_arn"] for account in manifest["accounts"]}
    return {
        "iam": {account: aws.assume(role).client("iam") for account, role in roles.items()},
        "instances": {i["name"]: i["id"] for i in manifest["instances"]},
        "principals": manifest["principals"],
    }


def test_aws_managed_policies_decide(seeded: dict[str, Any]) -> None:
    iam, web = seeded["iam"][PROD], instance_arn(PROD, seeded["instances"]["web-1"])
    alice, bob, oscar = (seeded["principals"][name][PROD] for name in ("alice", "bob", "oscar"))

    admin = iam.simulate_principal_policy(PolicySourceArn=alice, ActionNames=["ssm:StartSession"], ResourceArns=[web])

    assert admin["EvaluationResults"][0]["EvalDecision"] == "allowed"
    assert admin["EvaluationResults"][0]["MatchedStatements"] == [
        {"SourcePolicyId": "AdministratorAccess", "SourcePolicyType": "aws-managed"}
    ]
    assert decisions(iam, bob, ["ssm:SendCommand", "iam:CreateUser"], [web]) == [
        ("ssm:SendCommand", web, "allowed"),
        ("iam:CreateUser", web, "implicitDeny"),
    ]
    assert decisions(iam, oscar, ["ssm:StartSession", "ec2:DescribeInstances"]) == [
        ("ssm:StartSession", "*", "implicitDeny"),
        ("ec2:DescribeInstances", "*", "allowed"),
    ]


def _tag_context(**tags: str) -> list[dict[str, Any]]:
    return [
        {"ContextKeyName": f"ssm:resourceTag/{key}", "ContextKeyValues": [value], "ContextKeyType": "string"}
        for key, value in tags.items()
    ]


def test_resource_tags_come_only_from_the_context_entries(seeded: dict[str, Any]) -> None:
    """As in AWS: the simulator does not look the instance up; a key it is not given is missing."""
    iam, alice = seeded["iam"][STAGING], seeded["principals"]["alice"][STAGING]
    # Really tagged PassportAccess=enabled in EC2, which the simulation does not read.
    tagged = instance_arn(STAGING, seeded["instances"]["stage-web-1"])

    def simulate(context: list[dict[str, Any]]) -> dict[str, Any]:
        (result,) = iam.simulate_principal_policy(
            PolicySourceArn=alice, ActionNames=["ssm:StartSession"], ResourceArns=[tagged], ContextEntries=context
        )["EvaluationResults"]
        return result

    without = simulate([])
    assert (without["EvalResourceName"], without["EvalDecision"]) == (tagged, "implicitDeny")
    # With resources named, the missing keys are reported per resource, as AWS does.
    assert without["MissingContextValues"] == []
    (specific,) = without["ResourceSpecificResults"]
    assert specific["EvalResourceName"] == tagged and specific["EvalResourceDecision"] == "implicitDeny"
    assert specific["MissingContextValues"] == ["ssm:resourceTag/PassportAccess"]

    given = simulate(_tag_context(PassportAccess="enabled"))
    assert given["EvalDecision"] == "allowed"
    assert given["MatchedStatements"] == [{"SourcePolicyId": "PassportOnly", "SourcePolicyType": "user"}]
    assert given["ResourceSpecificResults"][0]["MissingContextValues"] == []
    assert simulate(_tag_context(PassportAccess="disabled"))["EvalDecision"] == "implicitDeny"


def test_a_deny_on_a_missing_key_does_not_match_and_is_reported(aws: Aws) -> None:
    """The case that matters: a Deny on a tag the caller did not send is not applied, only reported."""
    iam = aws.client("iam")
    name = f"frank-{uuid.uuid4().hex[:6]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.put_user_policy(
        UserName=name,
        PolicyName="NoProd",
        PolicyDocument=policy(
            {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "ssm:StartSession",
                "Resource": "*",
                "Condition": {"StringEquals": {"ssm:resourceTag/Env": "prod", "aws:SourceIp": "203.0.113.9"}},
            },
        ),
    )
    box = instance_arn("123456789012", aws.launch("prod-box-sim", Env="prod"))

    def simulate(**kwargs: Any) -> dict[str, Any]:
        return iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["ssm:StartSession"], **kwargs)[
            "EvaluationResults"
        ][0]

    unknown = simulate(ResourceArns=[box])
    assert unknown["EvalDecision"] == "allowed"
    # Every key of the statement is reported, not just the first one found missing.
    assert unknown["ResourceSpecificResults"][0]["MissingContextValues"] == ["aws:SourceIp", "ssm:resourceTag/Env"]
    # Without resources (``*``), the result itself carries them.
    anywhere = simulate()
    assert anywhere["MissingContextValues"] == ["aws:SourceIp", "ssm:resourceTag/Env"]
    assert "ResourceSpecificResults" not in anywhere
    source_ip = {"ContextKeyName": "aws:SourceIp", "ContextKeyValues": ["203.0.113.9"], "ContextKeyType": "ip"}
    told = simulate(ResourceArns=[box], ContextEntries=[*_tag_context(Env="prod"), source_ip])
    assert told["EvalDecision"] == "explicitDeny"


def test_an_explicit_deny_wins_and_wildcards_match(aws: Aws) -> None:
    iam = aws.client("iam")
    name = f"carol-{uuid.uuid4().hex[:6]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.put_user_policy(
        UserName=name,
        PolicyName="Broad",
        PolicyDocument=policy({"Effect": "Allow", "Action": ["ssm:Start*", "ec2:Describe?nstances"], "Resource": "*"}),
    )
    iam.put_user_policy(
        UserName=name,
        PolicyName="NoProduction",
        PolicyDocument=policy(
            {
                "Effect": "Deny",
                "Action": "ssm:*",
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": {"StringLike": {"ssm:resourceTag/Environment": "prod*"}},
            }
        ),
    )
    prod_box = instance_arn("123456789012", aws.launch("prod-box", Environment="production"))
    dev_box = instance_arn("123456789012", aws.launch("dev-box", Environment="dev"))

    # Each instance asked about with its own tags as context, as Passport does.
    results = [
        result
        for box, environment in ((prod_box, "production"), (dev_box, "dev"))
        for result in iam.simulate_principal_policy(
            PolicySourceArn=arn,
            ActionNames=["ssm:StartSession", "ssm:SendCommand"],
            ResourceArns=[box],
            ContextEntries=_tag_context(Environment=environment),
        )["EvaluationResults"]
    ]

    assert [(r["EvalActionName"], r["EvalResourceName"], r["EvalDecision"]) for r in results] == [
        ("ssm:StartSession", prod_box, "explicitDeny"),
        ("ssm:SendCommand", prod_box, "explicitDeny"),
        ("ssm:StartSession", dev_box, "allowed"),
        ("ssm:SendCommand", dev_box, "implicitDeny"),
    ]
    assert results[0]["MatchedStatements"] == [{"SourcePolicyId": "NoProduction", "SourcePolicyType": "user"}]
    assert decisions(iam, arn, ["EC2:DescribeInstances", "ec2:DescribeImages"]) == [
        ("EC2:DescribeInstances", "*", "allowed"),
        ("ec2:DescribeImages", "*", "implicitDeny"),
    ]


def test_roles_groups_not_action_and_managed_policies_of_the_account(aws: Aws) -> None:
    iam = aws.client("iam")
    suffix = uuid.uuid4().hex[:6]
    managed = iam.create_policy(
        PolicyName=f"EverythingButIam-{suffix}",
        PolicyDocument=policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}),
    )["Policy"]["Arn"]
    role = iam.create_role(RoleName=f"ops-{suffix}", AssumeRolePolicyDocument=policy())["Role"]["Arn"]
    iam.attach_role_policy(RoleName=f"ops-{suffix}", PolicyArn=managed)
    iam.create_group(GroupName=f"operators-{suffix}")
    iam.put_group_policy(
        GroupName=f"operators-{suffix}",
        PolicyName="Sessions",
        PolicyDocument=policy({"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*"}),
    )
    user = iam.create_user(UserName=f"dave-{suffix}")["User"]["Arn"]
    iam.add_user_to_group(GroupName=f"operators-{suffix}", UserName=f"dave-{suffix}")

    assert decisions(iam, role, ["ssm:StartSession", "iam:PassRole"]) == [
        ("ssm:StartSession", "*", "allowed"),
        ("iam:PassRole", "*", "implicitDeny"),
    ]
    assert decisions(iam, user, ["ssm:StartSession"]) == [("ssm:StartSession", "*", "allowed")]


def test_power_user_access_is_loaded_and_keeps_iam_out(aws: Aws) -> None:
    iam = aws.client("iam")
    name = f"erin-{uuid.uuid4().hex[:6]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/PowerUserAccess")

    assert decisions(iam, arn, ["ssm:StartSession", "iam:CreateUser"]) == [
        ("ssm:StartSession", "*", "allowed"),
        ("iam:CreateUser", "*", "implicitDeny"),
    ]


def test_unknown_principals_are_refused(aws: Aws) -> None:
    iam = aws.client("iam")
    with pytest.raises(ClientError) as missing:
        iam.simulate_principal_policy(PolicySourceArn="arn:aws:iam::123456789012:user/nobody", ActionNames=["s3:*"])
    assert missing.value.response["Error"]["Code"] == "NoSuchEntity"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_custom_policies_and_context_entries(aws: Aws) -> None:
    document = policy(
        {
            "Effect": "Allow",
            "Action": "ssm:StartSession",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}},
        }
    )

    def decide(region: str) -> str:
        result = aws.client("iam").simulate_custom_policy(
            PolicyInputList=[document],
            ActionNames=["ssm:StartSession"],
            ContextEntries=[
                {"ContextKeyName": "aws:RequestedRegion", "ContextKeyValues": [region], "ContextKeyType": "string"}
            ],
        )
        return result["EvaluationResults"][0]["EvalDecision"]

    assert (decide("eu-west-1"), decide("us-east-1")) == ("allowed", "implicitDeny")


def test_the_demo_s_federated_people_may_end_passport_s_sessions_but_resume_none() -> None:
    """``session/passport-*`` is every person's: ResumeSession there would hand one person another's stream."""
    from devcloud.iampolicy import ALLOWED, PolicySource, evaluate
    from devcloud.seed import FEDERATED_PASSPORT_ONLY_POLICY

    policies = [PolicySource("PassportOnly", "role", FEDERATED_PASSPORT_ONLY_POLICY)]
    someone_else = "arn:aws:ssm:us-east-1:222222222222:session/passport-r7-u3-0123456789abcdef0"
    assert evaluate(policies, "ssm:TerminateSession", someone_else, {}).decision == ALLOWED
    assert evaluate(policies, "ssm:ResumeSession", someone_else, {}).decision != ALLOWED
