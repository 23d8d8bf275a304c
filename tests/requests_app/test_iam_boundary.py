"""A person's permissions boundary that denies by a tag is honoured by the IAM check, through the portal's role.

GetContextKeysForPrincipalPolicy does not list a boundary's keys, and a ``Null`` condition is
answered by the key's absence without the simulator reporting it missing: the check reads the
boundary itself (``fleet/aws/boundary.py``) and sends the tags it looks at. When the portal's role
may not read it, every tag is sent instead. Answered by devcloud, which enforces the portal role's
policy (``accounts/policies/PassportPortalRole.json``) on each of those calls.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from accounts.models import AwsAccount, User
from core.errors import RequestRuleError
from requests_app.iam import iam_check_instances
from requests_app.models import Instance
from tests.factories import make_instance
from tests.requests_app.test_iam import new_iam_user, prod  # noqa: F401 (fixtures)
from tests.requests_app.test_iam_tags import simulator_calls, tagged_web  # noqa: F401 (fixtures)
from tests.stack import Cloud

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ALLOW_SSM = {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}
# Deny a session on any instance that carries the Protected tag, whatever its value.
NEVER_PROTECTED = {
    "Effect": "Deny",
    "Action": "ssm:StartSession",
    "Resource": "*",
    "Condition": {"Null": {"aws:ResourceTag/Protected": "false"}},
}


@pytest.fixture(autouse=True)
def iam_check_on(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = True


@pytest.fixture
def fenced(new_iam_user: tuple[User, Any, str]) -> Iterator[tuple[User, Any, str]]:  # noqa: F811
    """A person whose own policy allows ssm:*, with a boundary allowing it too, except on a protected instance."""
    person, iam, name = new_iam_user
    iam.put_user_policy(UserName=name, PolicyName="AllSsm", PolicyDocument=_policy(ALLOW_SSM))
    boundary = iam.create_policy(
        PolicyName=f"fence-{uuid.uuid4().hex[:8]}", PolicyDocument=_policy(ALLOW_SSM, NEVER_PROTECTED)
    )["Policy"]["Arn"]
    iam.put_user_permissions_boundary(UserName=name, PermissionsBoundary=boundary)
    try:
        yield person, iam, name
    finally:
        iam.delete_user_permissions_boundary(UserName=name)
        iam.delete_policy(PolicyArn=boundary)


def _refused(person: User, web: Instance) -> list[str]:
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=web.account, instances=[web], purpose="request")
    return list(caught.value.errors["instances"])


def test_a_boundary_denying_protected_instances_through_a_null_condition_is_honoured(
    tagged_web: Instance,  # noqa: F811
    fenced: tuple[User, Any, str],
    settings: Any,
) -> None:
    person, _, _ = fenced
    with simulator_calls(tagged_web.account, settings) as calls:
        refusal = _refused(person, tagged_web)
    assert refusal == [
        f"Your IAM policy on {tagged_web.account.name} explicitly denies ssm:StartSession on {tagged_web.label}."
    ]
    # The instance was asked about once, with the boundary's tag: not again after the simulator asked for it
    # (devcloud reports a Null condition's key missing; AWS need not); Env, which no policy reads, was not sent.
    (asked,) = [call for call in calls if tagged_web.arn in call["ResourceArns"]]
    sent = {entry["ContextKeyName"] for entry in asked["ContextEntries"]}
    assert {"aws:ResourceTag/Protected", "ssm:resourceTag/Protected"} <= sent
    assert not any(key.endswith("/Env") for key in sent)
    # An instance without the tag is still reached.
    bare = make_instance(tagged_web.account, "bare-box", tags={"Env": "prod"})
    iam_check_instances(user=person, account=tagged_web.account, instances=[bare], purpose="request")


@pytest.fixture
def portal_may_not_get_users(
    live_db: None,
    aws: Cloud,
    prod: AwsAccount,  # noqa: F811
    fenced: tuple[User, Any, str],
) -> Iterator[None]:
    """The portal's role in prod with GetUser denied, as a role set up before it needed it."""
    _, iam, _ = fenced
    role_arn = next(item["role_arn"] for item in aws.manifest["accounts"] if item["id"] == prod.account_id)
    role = role_arn.rsplit("/", 1)[-1]
    deny = {"Effect": "Deny", "Action": "iam:GetUser", "Resource": "*"}
    iam.put_role_policy(RoleName=role, PolicyName="NoGetUser", PolicyDocument=_policy(deny))
    try:
        yield
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="NoGetUser")


def test_when_get_user_is_denied_every_tag_is_sent_and_the_boundary_still_holds(
    tagged_web: Instance,  # noqa: F811
    fenced: tuple[User, Any, str],
    portal_may_not_get_users: None,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    person, _, _ = fenced
    with (
        caplog.at_level(logging.WARNING, logger="fleet.aws.iam"),
        simulator_calls(tagged_web.account, settings) as calls,
    ):
        refusal = _refused(person, tagged_web)
    assert refusal == [
        f"Your IAM policy on {tagged_web.account.name} explicitly denies ssm:StartSession on {tagged_web.label}."
    ]
    sent = {entry["ContextKeyName"] for call in calls for entry in call["ContextEntries"]}
    assert {"aws:ResourceTag/Protected", "aws:ResourceTag/Env"} <= sent  # every tag
    assert "GetUser refused: AccessDenied" in caplog.text and "every tag" in caplog.text
