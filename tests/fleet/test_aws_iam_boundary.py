"""The tags a principal's permissions boundary reads are sent too.

GetContextKeysForPrincipalPolicy lists the keys of the policies attached to the principal, not
of its permissions boundary. A boundary that denies by a tag through a ``Null`` (or
``...IfExists``) condition is answered by the tag's absence, and the simulator reports nothing
missing for it: left unsent, the tag let a protected instance through. The boundary's keys are
now read (GetUser / GetRole, GetPolicy, GetPolicyVersion, GetContextKeysForCustomPolicy); when
any of those calls fails, every tag is sent. A fake IAM client answers here;
tests/devcloud/test_iam_boundary_keys.py asks devcloud the same.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from fleet.arns import instance_arn
from fleet.aws.iam import IamMixin

USER = "arn:aws:iam::111122223333:user/people/alice"
ROLE = "arn:aws:iam::111122223333:role/Admin"
BOUNDARY = "arn:aws:iam::111122223333:policy/fence"
ARN = instance_arn(region="us-east-1", account_id="111122223333", instance_id="i-0123456789abcdef0")
# Deny everything on an instance that carries the Protected tag (whatever its value).
FENCE = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"Null": {"aws:ResourceTag/Protected": "false"}},
        },
    ],
}


def _denied(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, operation)


class _Pages:
    def __init__(self, iam: _Iam) -> None:
        self.iam = iam

    def paginate(self, **params: Any) -> list[dict[str, Any]]:
        self.iam.calls.append(params)
        sent = {entry["ContextKeyName"].lower() for entry in params["ContextEntries"]}
        # The boundary's Null condition: an unsent key is null, so the Deny does not match and,
        # as AWS may, nothing is reported missing.
        decision = "explicitDeny" if "aws:resourcetag/protected" in sent else "allowed"
        return [
            {
                "EvaluationResults": [
                    {"EvalActionName": a, "EvalResourceName": arn, "EvalDecision": decision, "MissingContextValues": []}
                    for arn in params["ResourceArns"]
                    for a in params["ActionNames"]
                ]
            }
        ]


class _Iam:
    """The principal's identity policies read no tag; its boundary is ``FENCE`` unless ``boundary`` says otherwise."""

    def __init__(self, *, boundary: str | None = BOUNDARY, refuse: str = "", document: Any = None) -> None:
        self.boundary = boundary
        self.refuse = refuse
        self.document = json.dumps(FENCE) if document is None else document
        self.asked: list[str] = []
        self.calls: list[dict[str, Any]] = []

    def _call(self, operation: str) -> None:
        self.asked.append(operation)
        if operation == self.refuse:
            raise _denied(operation)

    def _principal(self) -> dict[str, Any]:
        if self.boundary is None:
            return {}
        return {"PermissionsBoundary": {"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": self.boundary}}

    def get_context_keys_for_principal_policy(self, *, PolicySourceArn: str) -> dict[str, Any]:
        self._call("GetContextKeysForPrincipalPolicy")
        return {"ContextKeyNames": ["aws:username"]}

    def get_user(self, *, UserName: str) -> dict[str, Any]:
        self._call("GetUser")
        assert UserName == "alice"
        return {"User": {"UserName": UserName, "Arn": USER, **self._principal()}}

    def get_role(self, *, RoleName: str) -> dict[str, Any]:
        self._call("GetRole")
        assert RoleName == "Admin"
        return {"Role": {"RoleName": RoleName, "Arn": ROLE, **self._principal()}}

    def get_policy(self, *, PolicyArn: str) -> dict[str, Any]:
        self._call("GetPolicy")
        assert PolicyArn == BOUNDARY
        return {"Policy": {"Arn": PolicyArn, "DefaultVersionId": "v3"}}

    def get_policy_version(self, *, PolicyArn: str, VersionId: str) -> dict[str, Any]:
        self._call("GetPolicyVersion")
        assert (PolicyArn, VersionId) == (BOUNDARY, "v3")
        return {"PolicyVersion": {"Document": self.document, "VersionId": VersionId, "IsDefaultVersion": True}}

    def get_context_keys_for_custom_policy(self, *, PolicyInputList: list[str]) -> dict[str, Any]:
        self._call("GetContextKeysForCustomPolicy")
        (document,) = PolicyInputList
        assert json.loads(document) == FENCE
        return {"ContextKeyNames": ["aws:ResourceTag/Protected"]}

    def get_paginator(self, name: str) -> _Pages:
        assert name == "simulate_principal_policy"
        return _Pages(self)


class _Gateway(IamMixin):
    def __init__(self, iam: _Iam) -> None:
        self.iam = iam

    def _client(self, service: str, region: str) -> Any:  # type: ignore[override]
        return self.iam


def _ask(iam: _Iam, principal: str = USER, tags: dict[str, str] | None = None) -> bool:
    tags = {"Protected": "true", "Name": "db"} if tags is None else tags
    return _Gateway(iam).simulate_access(principal, {ARN: ["ssm:StartSession"]}, {ARN: tags}, {})[ARN].allowed


def _sent(iam: _Iam) -> set[str]:
    return {entry["ContextKeyName"] for call in iam.calls for entry in call["ContextEntries"]}


@pytest.mark.parametrize("principal", [USER, ROLE])
def test_a_protected_instance_denied_by_a_boundary_null_condition_is_not_allowed(principal: str) -> None:
    iam = _Iam()
    assert not _ask(iam, principal)
    # The boundary's tag is sent, the Name tag no policy reads is not.
    assert _sent(iam) == {"aws:ResourceTag/Protected", "ssm:resourceTag/Protected"}
    assert ("GetUser" if principal == USER else "GetRole") in iam.asked
    # An unprotected instance is still allowed.
    assert _ask(_Iam(), principal, tags={"Name": "web"})


def test_a_url_encoded_document_is_read_as_aws_returns_it() -> None:
    assert not _ask(_Iam(document=quote(json.dumps(FENCE))))


def test_no_boundary_costs_one_call_and_sends_only_what_the_policies_read() -> None:
    iam = _Iam(boundary=None)
    assert _ask(iam)
    assert iam.asked == ["GetContextKeysForPrincipalPolicy", "GetUser"]
    assert _sent(iam) == set()


@pytest.mark.parametrize("refused", ["GetUser", "GetPolicy", "GetPolicyVersion", "GetContextKeysForCustomPolicy"])
def test_when_the_boundary_cannot_be_read_every_tag_is_sent(refused: str, caplog: pytest.LogCaptureFixture) -> None:
    iam = _Iam(refuse=refused)
    with caplog.at_level(logging.WARNING, logger="fleet.aws.iam"):
        assert not _ask(iam)
    assert {"aws:ResourceTag/Protected", "aws:ResourceTag/Name"} <= _sent(iam)
    assert refused in caplog.text and "AccessDenied" in caplog.text and USER in caplog.text


def test_a_refused_get_role_sends_every_tag() -> None:
    iam = _Iam(refuse="GetRole")
    assert not _ask(iam, ROLE)
    assert "aws:ResourceTag/Name" in _sent(iam)


@pytest.mark.parametrize("document", ["not json", json.dumps(["a list"])])
def test_an_unreadable_boundary_document_sends_every_tag(document: str) -> None:
    iam = _Iam(document=document)
    assert not _ask(iam)
    assert "aws:ResourceTag/Name" in _sent(iam)
