"""How many SimulatePrincipalPolicy calls the IAM check makes, and what one odd instance costs the others.

With every instance's whole tag set as its own group, a Name tag made 90 instances 90 calls
(each inside the HTTP request; IAM throttles per account), and one instance with tags that
could not be sent refused the check of all the others. A fake IAM client answers here so each
call is counted; tests/requests_app/test_iam_tags.py asks devcloud's simulator the same things.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fleet.arns import instance_arn
from fleet.aws.iam import IamMixin

PRINCIPAL = "arn:aws:iam::111122223333:user/alice"


class _Pages:
    def __init__(self, iam: _Iam) -> None:
        self.iam = iam

    def paginate(self, **params: Any) -> list[dict[str, Any]]:
        self.iam.calls.append(params)
        sent = {entry["ContextKeyName"].lower() for entry in params["ContextEntries"]}
        missing = [key for key in self.iam.needed if key.lower() not in sent] + list(self.iam.stubborn)
        results = [
            {
                "EvalActionName": action,
                "EvalResourceName": arn,
                "EvalDecision": "allowed",
                "ResourceSpecificResults": [
                    {"EvalResourceName": arn, "EvalResourceDecision": "allowed", "MissingContextValues": missing}
                ],
            }
            for arn in params["ResourceArns"]
            for action in params["ActionNames"]
        ]
        return [{"EvaluationResults": results}]


class _Iam:
    """Allows everything; lists ``keys`` as the policies' context keys and ``needed`` as missing when unsent."""

    def __init__(self, keys: list[str] | ClientError, needed: tuple[str, ...] = ()) -> None:
        self.keys = keys
        self.needed = needed
        self.stubborn: tuple[str, ...] = ()
        self.calls: list[dict[str, Any]] = []

    def get_context_keys_for_principal_policy(self, *, PolicySourceArn: str) -> dict[str, Any]:
        assert PolicySourceArn == PRINCIPAL
        if isinstance(self.keys, ClientError):
            raise self.keys
        return {"ContextKeyNames": self.keys}

    def get_user(self, *, UserName: str) -> dict[str, Any]:
        return {
            "User": {"UserName": UserName, "Arn": PRINCIPAL}
        }  # no permissions boundary (tests/fleet/test_aws_iam_boundary.py)

    def get_paginator(self, name: str) -> _Pages:
        assert name == "simulate_principal_policy"
        return _Pages(self)


class _Gateway(IamMixin):
    def __init__(self, iam: _Iam) -> None:
        self.iam = iam

    def _client(self, service: str, region: str) -> Any:  # type: ignore[override]
        return self.iam


def _fleet(n: int) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    arns = [instance_arn(region="us-east-1", account_id="111122223333", instance_id=f"i-{i:017x}") for i in range(n)]
    questions = {arn: ["ssm:StartSession"] for arn in arns}
    tags = {arn: {"Name": f"web-{i}", "Env": "prod" if i % 2 else "dev"} for i, arn in enumerate(arns)}
    return questions, tags


def _sent(call: dict[str, Any]) -> dict[str, list[str]]:
    return {entry["ContextKeyName"]: entry["ContextKeyValues"] for entry in call["ContextEntries"]}


def test_ninety_named_instances_are_not_ninety_simulator_calls() -> None:
    questions, tags = _fleet(90)  # rules.INSTANCES_MAX
    gateway = _Gateway(_Iam(["aws:username", "ssm:resourceTag/env"]))
    decisions = gateway.simulate_access(PRINCIPAL, questions, tags, {})
    assert all(decision.allowed for decision in decisions.values())
    # One call per value of the one tag a policy reads (Env, in any case); Name is never sent.
    assert len(gateway.iam.calls) == 2
    assert sorted(_sent(call)["ssm:resourceTag/Env"] for call in gateway.iam.calls) == [["dev"], ["prod"]]
    assert all(set(_sent(call)) == {"ssm:resourceTag/Env", "aws:ResourceTag/Env"} for call in gateway.iam.calls)


def test_a_policy_that_reads_no_tag_is_one_call() -> None:
    questions, tags = _fleet(90)
    gateway = _Gateway(_Iam(["aws:SourceIp"]))
    gateway.simulate_access(PRINCIPAL, questions, tags, {})
    assert len(gateway.iam.calls) == 1 and gateway.iam.calls[0]["ContextEntries"] == []


def test_a_tag_missing_but_not_listed_is_sent_on_a_second_call() -> None:
    """A key GetContextKeysForPrincipalPolicy did not name (a boundary's) is still sent once reported missing."""
    questions, tags = _fleet(4)
    gateway = _Gateway(_Iam([], needed=("aws:ResourceTag/Env",)))
    decisions = gateway.simulate_access(PRINCIPAL, questions, tags, {})
    assert all(decision.allowed for decision in decisions.values())
    assert [len(call["ResourceArns"]) for call in gateway.iam.calls] == [4, 2, 2]


def test_a_tag_that_stays_missing_is_unconfirmed() -> None:
    questions, tags = _fleet(1)
    (arn,) = questions
    gateway = _Gateway(_Iam([]))
    gateway.iam.stubborn = ("ssm:resourceTag/Owner",)  # reported missing even when sent
    tags[arn]["Owner"] = "alice"
    decision = gateway.simulate_access(PRINCIPAL, questions, tags, {})[arn]
    assert not decision.allowed and decision.missing_context == ("ssm:resourceTag/Owner",)
    assert len(gateway.iam.calls) == 2
    # A key the instance does not have is truly absent, as when the person connects.
    del tags[arn]["Owner"]
    assert gateway.simulate_access(PRINCIPAL, questions, tags, {})[arn].allowed


def test_when_the_keys_cannot_be_had_every_tag_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    questions, tags = _fleet(3)
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetContextKeysForPrincipalPolicy")
    gateway = _Gateway(_Iam(denied))
    with caplog.at_level(logging.WARNING, logger="fleet.aws.iam"):
        decisions = gateway.simulate_access(PRINCIPAL, questions, tags, {})
    assert all(decision.allowed for decision in decisions.values())
    assert len(gateway.iam.calls) == 3  # correct, one call per distinct set of tags
    assert all("ssm:resourceTag/Name" in _sent(call) for call in gateway.iam.calls)
    assert "AccessDenied" in caplog.text and PRINCIPAL in caplog.text


def test_a_key_named_with_a_variable_sends_every_tag() -> None:
    questions, tags = _fleet(2)
    gateway = _Gateway(_Iam(["aws:ResourceTag/team-${aws:PrincipalTag/team}"]))
    gateway.simulate_access(PRINCIPAL, questions, tags, {})
    assert all("aws:ResourceTag/Name" in _sent(call) for call in gateway.iam.calls)


@pytest.mark.parametrize(
    ("odd_tags", "why"),
    [
        ({"Env": "dev", "env": "dup"}, "'Env' and 'env' differ only in case"),
        ({"Env": "v" * 257}, "the value of its tag 'Env' is longer than 256 characters"),
    ],
)
def test_one_oddly_tagged_instance_does_not_refuse_the_others(odd_tags: dict[str, str], why: str) -> None:
    questions, tags = _fleet(3)
    odd = next(iter(questions))
    tags[odd] = {"Name": "web-0", **odd_tags}  # legal in EC2 (keys are case-sensitive)
    gateway = _Gateway(_Iam(["ssm:resourceTag/Env"]))
    decisions = gateway.simulate_access(PRINCIPAL, questions, tags, {})
    assert all(d.allowed for arn, d in decisions.items() if arn != odd)
    assert not decisions[odd].allowed and decisions[odd].decision == "implicitDeny"
    assert why in decisions[odd].unconfirmed and odd.rsplit("/", 1)[1] in decisions[odd].unconfirmed
    assert all(odd not in call["ResourceArns"] for call in gateway.iam.calls)


def test_odd_tags_no_policy_reads_block_nothing() -> None:
    questions, tags = _fleet(3)
    odd = next(iter(questions))
    tags[odd] = {"Name": "web-0", "name": "dup", "Note": "v" * 300, **{f"k{n}": "v" for n in range(120)}}
    gateway = _Gateway(_Iam(["ssm:resourceTag/Env"]))
    decisions = gateway.simulate_access(PRINCIPAL, questions, tags, {})
    assert all(d.allowed for d in decisions.values())


def test_too_many_tags_when_every_tag_is_sent_is_unconfirmed_for_that_instance() -> None:
    questions, tags = _fleet(2)
    odd = next(iter(questions))
    tags[odd] = {f"k{n}": "v" for n in range(101)}
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetContextKeysForPrincipalPolicy")
    decisions = _Gateway(_Iam(denied)).simulate_access(PRINCIPAL, questions, tags, {})
    assert "it has 101 tags, more than the 100 Passport sends" in decisions[odd].unconfirmed
    assert [d.allowed for arn, d in decisions.items() if arn != odd] == [True]
