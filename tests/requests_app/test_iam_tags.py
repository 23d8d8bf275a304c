"""The IAM check sends an instance's tags that the person's policies look at, from the first call.

With ``...IfExists`` and ``Null`` conditions a tag left out turns the answer around, and AWS does
not promise to say it needed one; so GetContextKeysForPrincipalPolicy says which tags the
policies read, and every instance goes with its values of those, whatever kind of condition
reads them. These policies are answered against devcloud as a real StartSession with the
instance's tags would be; instances that differ only in tags no policy reads share one call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from accounts.models import AwsAccount, User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import fleet_for
from requests_app import services
from requests_app.iam import iam_check_instances
from requests_app.iam.refusals import POLICY_POINTER
from requests_app.models import Instance
from tests.factories import make_instance
from tests.requests_app.test_iam import (  # noqa: F401 (fixtures)
    DOCUMENTS_AND_OWN_SESSIONS,
    _instance,
    new_iam_user,
    prod,
)
from tests.stack import Cloud

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]


@pytest.fixture(autouse=True)
def iam_check_on(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = True


def _admin_client(aws: Cloud, account: AwsAccount, service: str) -> Any:
    """A client in the account as its administrator (the portal's role may not tag instances or set policies)."""
    endpoint = {"region_name": "us-east-1", "endpoint_url": aws.endpoint_url}
    sts = boto3.client("sts", aws_access_key_id="testing", aws_secret_access_key="testing", **endpoint)
    admin = next(item["admin_role_arn"] for item in aws.manifest["accounts"] if item["id"] == account.account_id)
    creds = sts.assume_role(RoleArn=admin, RoleSessionName="passport-tests")["Credentials"]
    return boto3.client(
        service,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        **endpoint,
    )


@pytest.fixture
def tagged_web(aws: Cloud, prod: AwsAccount) -> Iterator[Instance]:  # noqa: F811
    """web-1 tagged Env=prod and Protected=yes in devcloud's EC2, and so in Passport's inventory."""
    ec2 = _admin_client(aws, prod, "ec2")
    web = _instance(prod, "web-1")
    tags = [{"Key": "Env", "Value": "prod"}, {"Key": "Protected", "Value": "yes"}]
    ec2.create_tags(Resources=[web.instance_id], Tags=tags)
    try:
        services.inventory_sync(account=prod)
        web.refresh_from_db()
        assert web.tags.get("Env") == "prod" and web.tags.get("Protected") == "yes"
        yield web
    finally:
        ec2.delete_tags(Resources=[web.instance_id], Tags=tags)


@contextmanager
def simulator_calls(
    account: AwsAccount, settings: Any, operation: str = "SimulatePrincipalPolicy"
) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every call of ``operation`` the check makes, as boto3 sends them."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    gateway: Any = fleet_for(account)
    client = gateway._client("iam", settings.AWS_REGION)  # the portal role's shared client
    client.meta.events.register(f"provide-client-params.iam.{operation}", record)
    try:
        yield calls
    finally:
        client.meta.events.unregister(f"provide-client-params.iam.{operation}", record)


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _with_real_tags(iam: Any, user_arn: str, web: Instance) -> str:
    """The simulator's answer given the instance's tags, as a real StartSession carries them."""
    context = [
        {"ContextKeyName": f"ssm:resourceTag/{key}", "ContextKeyType": "string", "ContextKeyValues": [value]}
        for key, value in web.tags.items()
    ]
    result = iam.simulate_principal_policy(
        PolicySourceArn=user_arn, ActionNames=["ssm:StartSession"], ResourceArns=[web.arn], ContextEntries=context
    )
    return str(result["EvaluationResults"][0]["EvalDecision"])


ALLOW_TERMINATE = {"Effect": "Allow", "Action": "ssm:TerminateSession", "Resource": "*"}


def test_an_allow_on_dev_if_exists_does_not_open_a_prod_instance(
    tagged_web: Instance,
    new_iam_user: tuple[User, Any, str],  # noqa: F811
) -> None:
    person, iam, name = new_iam_user
    dev_only = {
        "Effect": "Allow",
        "Action": "ssm:StartSession",
        "Resource": "*",
        "Condition": {"StringEqualsIfExists": {"ssm:resourceTag/Env": "dev"}},
    }
    iam.put_user_policy(UserName=name, PolicyName="DevOnly", PolicyDocument=_policy(dev_only, ALLOW_TERMINATE))
    assert _with_real_tags(iam, iam.get_user(UserName=name)["User"]["Arn"], tagged_web) == "implicitDeny"

    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=tagged_web.account, instances=[tagged_web], purpose="request")
    assert caught.value.errors["instances"] == [
        f"Your IAM policy on {tagged_web.account.name} does not allow ssm:StartSession on {tagged_web.label}. "
        + POLICY_POINTER
    ]


def test_a_deny_on_instances_carrying_a_tag_null_false_is_honoured(
    tagged_web: Instance,
    new_iam_user: tuple[User, Any, str],  # noqa: F811
) -> None:
    person, iam, name = new_iam_user
    never_protected = {
        "Effect": "Deny",
        "Action": "ssm:StartSession",
        "Resource": "*",
        "Condition": {"Null": {"ssm:resourceTag/Protected": "false"}},
    }
    allow_all = {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}
    iam.put_user_policy(UserName=name, PolicyName="NotProtected", PolicyDocument=_policy(allow_all, never_protected))
    assert _with_real_tags(iam, iam.get_user(UserName=name)["User"]["Arn"], tagged_web) == "explicitDeny"

    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=tagged_web.account, instances=[tagged_web], purpose="request")
    assert caught.value.errors["instances"] == [
        f"Your IAM policy on {tagged_web.account.name} explicitly denies ssm:StartSession on {tagged_web.label}."
    ]
    # An instance without the tag is still reached: the key is truly absent there.
    bare = make_instance(tagged_web.account, "bare-box", tags={"Env": "prod"})
    iam_check_instances(user=person, account=tagged_web.account, instances=[bare], purpose="request")


def test_a_tag_value_is_data_not_a_policy_variable_or_a_pattern(
    prod: AwsAccount,  # noqa: F811
    new_iam_user: tuple[User, Any, str],  # noqa: F811
    settings: Any,
) -> None:
    person, iam, name = new_iam_user
    own_instances = {
        "Effect": "Allow",
        "Action": "ssm:StartSession",
        "Resource": "arn:aws:ec2:*:*:instance/*",
        "Condition": {"StringLike": {"ssm:resourceTag/Owner": "${aws:username}"}},
    }
    # A policy that reads Note too, so the hostile value is sent.
    no_notes = {
        "Effect": "Deny",
        "Action": "ssm:StartSession",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:ResourceTag/Note": "never-this"}},
    }
    iam.put_user_policy(
        UserName=name,
        PolicyName="OwnBoxes",
        PolicyDocument=_policy(own_instances, no_notes, *DOCUMENTS_AND_OWN_SESSIONS),
    )
    hostile = '${aws:username}", "*\n<x>'
    mine = make_instance(prod, "mine", tags={"Owner": name})
    trick = make_instance(prod, "trick", tags={"Owner": "${aws:username}", "Note": hostile})
    star = make_instance(prod, "star", tags={"Owner": "*"})

    iam_check_instances(user=person, account=prod, instances=[mine], purpose="request")
    with simulator_calls(prod, settings) as calls, pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=prod, instances=[mine, trick, star], purpose="request")
    assert caught.value.errors["instances"] == [
        f"Your IAM policy on {prod.name} does not allow ssm:StartSession on {trick.label}. {POLICY_POINTER}",
        f"Your IAM policy on {prod.name} does not allow ssm:StartSession on {star.label}. {POLICY_POINTER}",
    ]
    (sent,) = [call["ContextEntries"] for call in calls if call["ResourceArns"] == [trick.arn]]
    for prefix in ("ssm:resourceTag/", "aws:ResourceTag/"):
        assert {"ContextKeyName": f"{prefix}Note", "ContextKeyType": "string", "ContextKeyValues": [hostile]} in sent
        assert {
            "ContextKeyName": f"{prefix}Owner",
            "ContextKeyType": "string",
            "ContextKeyValues": ["${aws:username}"],
        } in sent


@pytest.mark.parametrize(
    ("tags", "why"),
    [
        ({"Env": "dev", "env": "prod"}, "'Env' and 'env' differ only in case"),
        ({"Env": "v" * 257}, "the value of its tag 'Env' is longer than 256 characters"),
    ],
)
def test_an_instance_whose_tags_a_policy_reads_cannot_be_sent_is_refused_alone(
    prod: AwsAccount,  # noqa: F811
    new_iam_user: tuple[User, Any, str],  # noqa: F811
    settings: Any,
    tags: dict[str, str],
    why: str,
) -> None:
    person, iam, name = new_iam_user
    no_prod = {
        "Effect": "Deny",
        "Action": "ssm:StartSession",
        "Resource": "*",
        "Condition": {"StringEquals": {"ssm:resourceTag/Env": "prod"}},
    }
    allow_all = {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}
    iam.put_user_policy(UserName=name, PolicyName="All", PolicyDocument=_policy(allow_all, no_prod))
    box = make_instance(prod, "odd-box", tags=tags)
    fine = make_instance(prod, "fine-box", tags={"Env": "dev", "Name": "fine-box"})
    with simulator_calls(prod, settings) as calls, pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=prod, instances=[box, fine], purpose="request")
    (message,) = caught.value.errors["instances"]
    assert "could not confirm" in message and box.instance_id in message and why in message, message
    assert box.label in message
    assert calls and all(box.arn not in call["ResourceArns"] for call in calls)
    entry = LogbookEntry.objects.filter(action="iam.checked").latest("id")
    assert entry.detail["allowed"] is False
    assert why in entry.detail["decisions"][box.instance_id]["unconfirmed"]
    assert entry.detail["decisions"][fine.instance_id]["decision"] == "allowed"


def test_tags_no_policy_reads_block_nothing_and_split_no_calls(
    prod: AwsAccount,  # noqa: F811
    new_iam_user: tuple[User, Any, str],  # noqa: F811
    settings: Any,
) -> None:
    """A Name tag on each instance, tags differing only in case, 101 tags: none is read, none matters."""
    person, iam, name = new_iam_user
    no_prod = {
        "Effect": "Deny",
        "Action": "ssm:StartSession",
        "Resource": "arn:aws:ec2:*:*:instance/*",
        "Condition": {"StringEqualsIfExists": {"ssm:resourceTag/Env": "prod"}},
    }
    allow_all = {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}
    iam.put_user_policy(UserName=name, PolicyName="All", PolicyDocument=_policy(allow_all, no_prod))
    boxes = [make_instance(prod, f"named-{n}", tags={"Name": f"named-{n}", "Env": "dev"}) for n in range(12)]
    boxes.append(make_instance(prod, "odd-box", tags={"Name": "a", "name": "b", "Env": "dev"}))
    boxes.append(make_instance(prod, "many-tags", tags={**{f"k{n}": "v" for n in range(101)}, "Env": "dev"}))
    with (
        simulator_calls(prod, settings) as calls,
        simulator_calls(prod, settings, "GetContextKeysForPrincipalPolicy") as asked_keys,
    ):
        iam_check_instances(user=person, account=prod, instances=boxes, purpose="request")
    assert len(asked_keys) == 1
    # Every instance has Env=dev; the documents have no tags and the sessions' are not known.
    assert len(calls) == 2, [call["ContextEntries"] for call in calls]
    sent = {entry["ContextKeyName"] for call in calls for entry in call["ContextEntries"]}
    assert not any(key.endswith(("/Name", "/name", "/k0")) for key in sent), sent

    prod_box = make_instance(prod, "prod-box", tags={"Name": "prod-box", "Env": "prod"})
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=prod, instances=[*boxes, prod_box], purpose="request")
    assert caught.value.errors["instances"] == [
        f"Your IAM policy on {prod.name} explicitly denies ssm:StartSession on {prod_box.label}."
    ]
