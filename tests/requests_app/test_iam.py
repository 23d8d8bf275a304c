"""The IAM check: SimulatePrincipalPolicy against devcloud decides who may reach which instance."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from django.utils import timezone

from accounts.models import AwsAccount, Membership, User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import fleet_for
from requests_app import services
from requests_app.iam import SESSION_ACTIONS, IamUnavailable, iam_check_instances
from requests_app.iam.principals import CHECK_MARKER
from requests_app.iam.refusals import POLICY_POINTER
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.conftest import World
from tests.factories import make_account, make_instance, make_user
from tests.stack import AWS_ENV, Cloud, account_admin_client

POLICIES = Path(__file__).resolve().parents[2] / "accounts" / "policies"
DENY_SESSIONS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "ssm:StartSession", "Resource": "arn:aws:ec2:*:*:instance/*"}],
    }
)


# What Passport's check tells the simulator with every question (requests_app.iam.principals.CHECK_MARKER).
CHECK_ENTRIES = [
    {"ContextKeyName": key, "ContextKeyType": "stringList", "ContextKeyValues": [value]}
    for key, value in CHECK_MARKER.items()
]


def _static_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.fixture(autouse=True)
def iam_check_on(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = True


# --- without AWS --------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_principal_arn_is_refused_with_a_clear_message() -> None:
    account = make_account()
    person = make_user("nadia")
    Membership.objects.create(user=person, account=account, role="admin", principal_arn="")
    web = make_instance(account, "web-1")
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=account, instances=[web], purpose="request")
    assert "no IAM principal" in caught.value.errors["instances"][0]
    entry = LogbookEntry.objects.get(action="iam.checked")
    assert entry.detail["allowed"] is False and entry.detail["purpose"] == "request"


@pytest.mark.django_db
def test_the_check_is_skipped_when_switched_off(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = False
    account = make_account()
    person = make_user("nadia")
    iam_check_instances(user=person, account=account, instances=[make_instance(account)], purpose="request")
    assert not LogbookEntry.objects.filter(action="iam.checked").exists()


# --- against devcloud ---------------------------------------------------------------------

integration = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]


def _account(aws: Cloud, name: str) -> AwsAccount:
    item = next(account for account in aws.manifest["accounts"] if account["name"] == name)
    account = AwsAccount.objects.create(
        account_id=item["id"], name=item["name"], role_arn=item["role_arn"], regions=item["regions"]
    )
    assert not services.inventory_sync(account=account).errors
    return account


def _person(aws: Cloud, name: str, *accounts: AwsAccount) -> User:
    person = make_user(name)
    for account in accounts:
        Membership.objects.create(
            user=person,
            account=account,
            role="admin",
            principal_arn=aws.manifest["principals"][name][account.account_id],
        )
    return person


def _instance(account: AwsAccount, name: str) -> Instance:
    return Instance.objects.get(account=account, name=name)


def _iam_client(aws: Cloud, account: AwsAccount) -> Any:
    """IAM in the account, as its administrator: how devcloud's seed sets people up (the portal's role may not)."""
    sts = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=aws.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    admin = next(item["admin_role_arn"] for item in aws.manifest["accounts"] if item["id"] == account.account_id)
    creds = sts.assume_role(RoleArn=admin, RoleSessionName="passport-tests")["Credentials"]
    return boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


@pytest.fixture
def prod(aws: Cloud) -> AwsAccount:
    return _account(aws, "Acme Production")


@pytest.fixture
def staging(aws: Cloud) -> AwsAccount:
    return _account(aws, "Acme Staging")


@pytest.fixture
def new_iam_user(aws: Cloud, prod: AwsAccount) -> Iterator[tuple[User, Any, str]]:
    """A fresh IAM user in prod (name unique per test) mapped to a fresh Passport person."""
    iam = _iam_client(aws, prod)
    name = f"tester-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    person = make_user(name)
    Membership.objects.create(user=person, account=prod, role="admin", principal_arn=arn)
    yield person, iam, name
    for policy in iam.list_user_policies(UserName=name)["PolicyNames"]:
        iam.delete_user_policy(UserName=name, PolicyName=policy)
    for policy in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]:
        iam.detach_user_policy(UserName=name, PolicyArn=policy["PolicyArn"])
    iam.delete_user(UserName=name)


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_a_principal_deleted_from_iam_is_a_refusal_not_a_question_aws_could_not_answer(
    aws: Cloud, prod: AwsAccount
) -> None:
    iam = _iam_client(aws, prod)
    name = f"tester-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    person = make_user(name)
    Membership.objects.create(user=person, account=prod, role="admin", principal_arn=arn)
    iam.delete_user(UserName=name)  # SimulatePrincipalPolicy now answers NoSuchEntity
    web = _instance(prod, "web-1")
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=prod, instances=[web], purpose="session")
    # A refusal, as for a person with no principal: not IamUnavailable, which an open session survives.
    assert not isinstance(caught.value, IamUnavailable)
    (message,) = caught.value.errors["instances"]
    assert f"Your IAM principal {arn} no longer exists on {prod.name}" in message, message
    entry = LogbookEntry.objects.get(action="iam.checked")
    assert entry.detail["allowed"] is False
    assert entry.detail["principal_gone"] is True and "NoSuchEntity" in entry.detail["error"]


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_alice_with_administrator_access_may_request_in_prod(aws: Cloud, prod: AwsAccount) -> None:
    alice = _person(aws, "alice", prod)
    web = _instance(prod, "web-1")
    access_request = services.access_request_create(requester=alice, account=prod, instances=[web], reason="deploy fix")
    assert AccessRequest.objects.filter(pk=access_request.pk).exists()
    entry = LogbookEntry.objects.filter(action="iam.checked").latest("id")
    assert entry.detail["allowed"] is True
    assert entry.detail["decisions"][web.instance_id]["actions"] == {action: "allowed" for action in SESSION_ACTIONS}


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_oscar_without_ssm_is_refused_naming_the_instance(aws: Cloud, prod: AwsAccount) -> None:
    oscar = _person(aws, "oscar", prod)
    web = _instance(prod, "web-1")
    with pytest.raises(RequestRuleError) as caught:
        services.access_request_create(requester=oscar, account=prod, instances=[web], reason="look around")
    messages = caught.value.errors["instances"]
    assert len(messages) == 1 and web.instance_id in messages[0] and "ssm:StartSession" in messages[0]
    assert not AccessRequest.objects.filter(requester=oscar).exists()
    entry = LogbookEntry.objects.filter(action="iam.checked").latest("id")
    assert entry.detail["decisions"][web.instance_id]["decision"] == "implicitDeny"
    assert LogbookEntry.objects.filter(action="request.create_denied", actor=oscar).exists()


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_alice_in_staging_only_reaches_instances_tagged_for_passport(aws: Cloud, staging: AwsAccount) -> None:
    alice = _person(aws, "alice", staging)
    tagged = _instance(staging, "stage-web-1")
    # An instance without the PassportAccess tag (devcloud knows no tags for it).
    untagged = make_instance(staging, "stage-untagged-1", instance_id="i-0badc0ffee0000001")
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=alice, account=staging, instances=[tagged, untagged], purpose="request")
    entry = LogbookEntry.objects.filter(action="iam.checked").latest("id")
    decisions = entry.detail["decisions"]
    assert decisions[untagged.instance_id]["actions"]["ssm:StartSession"] == "implicitDeny"
    assert decisions[tagged.instance_id]["actions"] == {
        "ssm:StartSession": "allowed",
        "ssm:TerminateSession": "allowed",
    }
    assert [message for message in caught.value.errors["instances"] if tagged.instance_id in message] == []
    assert any(untagged.instance_id in message for message in caught.value.errors["instances"])
    iam_check_instances(user=alice, account=staging, instances=[tagged], purpose="request")


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_an_explicit_deny_wins_over_administrator_access(aws: Cloud, prod: AwsAccount) -> None:
    alice = _person(aws, "alice", prod)
    web = _instance(prod, "web-1")
    iam = _iam_client(aws, prod)
    iam.put_user_policy(UserName="alice", PolicyName="NoSessions", PolicyDocument=DENY_SESSIONS)
    try:
        with pytest.raises(RequestRuleError) as caught:
            iam_check_instances(user=alice, account=prod, instances=[web], purpose="certificate")
    finally:
        iam.delete_user_policy(UserName="alice", PolicyName="NoSessions")
    assert "explicitly denies" in caught.value.errors["instances"][0]
    entry = LogbookEntry.objects.filter(action="iam.checked").latest("id")
    assert entry.detail["decisions"][web.instance_id]["decision"] == "explicitDeny"
    assert entry.detail["purpose"] == "certificate"


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_amazon_ssm_full_access_allows(aws: Cloud, prod: AwsAccount) -> None:
    bob = _person(aws, "bob", prod)
    iam_check_instances(
        user=bob, account=prod, instances=[_instance(prod, "web-1"), _instance(prod, "db-1")], purpose="request"
    )


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_power_user_access_allows(prod: AwsAccount, new_iam_user: tuple[User, Any, str]) -> None:
    person, iam, name = new_iam_user
    iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/PowerUserAccess")
    iam_check_instances(user=person, account=prod, instances=[_instance(prod, "web-1")], purpose="request")


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
@pytest.mark.parametrize("policy_file", ["PassportOnly.json", "ReadOnlyWithPassport.json"])
def test_shipped_policies_allow_sessions_on_any_instance(
    aws: Cloud, prod: AwsAccount, staging: AwsAccount, new_iam_user: tuple[User, Any, str], policy_file: str
) -> None:
    document = (POLICIES / policy_file).read_text()
    instances = list(Instance.objects.filter(account__in=[prod, staging]))
    iam = _iam_client(aws, prod)
    results = iam.simulate_custom_policy(
        PolicyInputList=[document],
        ActionNames=list(SESSION_ACTIONS),
        ResourceArns=[i.arn for i in instances],
        ContextEntries=CHECK_ENTRIES,
    )["EvaluationResults"]
    assert len(results) == 2 * len(instances)
    assert {result["EvalDecision"] for result in results} == {"allowed"}
    # Without the marker only Passport's check sends, they allow nothing (see the test below).
    results = iam.simulate_custom_policy(
        PolicyInputList=[document], ActionNames=list(SESSION_ACTIONS), ResourceArns=[instances[0].arn]
    )["EvaluationResults"]
    assert {result["EvalDecision"] for result in results} == {"implicitDeny"}
    # And end to end, as the inline policy of a person in the account.
    person, iam, name = new_iam_user
    iam.put_user_policy(UserName=name, PolicyName=policy_file.removesuffix(".json"), PolicyDocument=document)
    iam_check_instances(user=person, account=prod, instances=[_instance(prod, "web-1")], purpose="request")


# What Passport asks of a person's principal is only SESSION_ACTIONS (simulated, never called with
# their credentials: sessions start with the portal's role, narrowed to the request).
NOT_PASSPORTS = [
    "ssm:ResumeSession",
    "ssm:DescribeSessions",
    "ssm:GetConnectionStatus",
    "ssm:DescribeInstanceInformation",
    "ssm:SendCommand",
    "ssm:GetParameter",
    "ec2:DescribeInstances",
    "ec2:StopInstances",
    "iam:ListUsers",
    "s3:ListAllMyBuckets",
]


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_passport_only_allows_nothing_but_the_session_actions(aws: Cloud, prod: AwsAccount) -> None:
    """RackspacePassportOnly: "the user won't have any other permissions in the AWS console"."""
    document = (POLICIES / "PassportOnly.json").read_text()
    instance = _instance(prod, "web-1")
    iam = _iam_client(aws, prod)
    session = f"arn:aws:ssm:us-east-1:{prod.account_id}:session/someone-0123456789abcdef0"
    for resources in ([instance.arn, session], ["*"]):
        results = iam.simulate_custom_policy(
            PolicyInputList=[document], ActionNames=NOT_PASSPORTS, ResourceArns=resources
        )["EvaluationResults"]
        allowed = sorted({result["EvalActionName"] for result in results if result["EvalDecision"] == "allowed"})
        assert allowed == [], resources
    # What Passport asks about, on any instance, still is.
    results = iam.simulate_custom_policy(
        PolicyInputList=[document],
        ActionNames=list(SESSION_ACTIONS),
        ResourceArns=[instance.arn],
        ContextEntries=CHECK_ENTRIES,
    )["EvaluationResults"]
    assert {result["EvalDecision"] for result in results} == {"allowed"}


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
@pytest.mark.parametrize("policy_file", ["PassportOnly.json", "ReadOnlyWithPassport.json"])
def test_shipped_policies_allow_no_session_and_no_hand_off_in_aws_itself(
    aws: Cloud, prod: AwsAccount, policy_file: str
) -> None:
    """Whoever signs in to AWS as a principal holding only a shipped policy gets no session there.

    Not a port forward of their own, not the end of someone else's Passport session, not a
    Windows password waiting in Parameter Store for its instance: the statement for sessions
    holds only for Passport's simulated question (aws:CalledVia, which no real request carries).
    """
    iam = account_admin_client(aws, prod.account_id, "iam")
    name = f"shipped-{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role_arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="Shipped", PolicyDocument=(POLICIES / policy_file).read_text())
    admin_ssm = account_admin_client(aws, prod.account_id, "ssm")
    handoff = f"/passport/handoff/{uuid.uuid4()}"
    admin_ssm.put_parameter(Name=handoff, Value="Windows-password-1", Type="SecureString")
    web = _instance(prod, "web-1")
    theirs = admin_ssm.start_session(Target=web.instance_id, DocumentName="AWS-StartSSHSession")["SessionId"]
    try:
        creds = boto3.client(
            "sts", endpoint_url=aws.endpoint_url, region_name="us-east-1", **_static_keys()
        ).assume_role(RoleArn=role_arn, RoleSessionName="mallory")["Credentials"]
        ssm = boto3.client(
            "ssm",
            endpoint_url=aws.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        refused = {
            "forward": lambda: ssm.start_session(
                Target=web.instance_id,
                DocumentName="AWS-StartPortForwardingSession",
                Parameters={"portNumber": ["5432"]},
            ),
            "ssh": lambda: ssm.start_session(Target=web.instance_id, DocumentName="AWS-StartSSHSession"),
            "default shell": lambda: ssm.start_session(Target=web.instance_id),
            "end another's session": lambda: ssm.terminate_session(SessionId=theirs),
            "read the hand-off": lambda: ssm.get_parameter(Name=handoff, WithDecryption=True),
            "read the hand-off by path": lambda: ssm.get_parameters_by_path(
                Path="/passport/", Recursive=True, WithDecryption=True
            ),
        }
        outcomes = {}
        for what, call in refused.items():
            try:
                call()
                outcomes[what] = "allowed"
            except ClientError as exc:
                outcomes[what] = exc.response["Error"]["Code"]
        assert outcomes == dict.fromkeys(refused, "AccessDeniedException")
        if policy_file == "ReadOnlyWithPassport.json":
            assert ssm.describe_instance_information()["InstanceInformationList"]  # still read-only
    finally:
        admin_ssm.terminate_session(SessionId=theirs)
        admin_ssm.delete_parameter(Name=handoff)
        iam.delete_role_policy(RoleName=name, PolicyName="Shipped")
        iam.delete_role(RoleName=name)


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_alice_in_staging_is_refused_exactly_the_untagged_instance(aws: Cloud, staging: AwsAccount) -> None:
    """Her policy is AWS's documented end-user one: StartSession by tag and on the session documents,
    TerminateSession on ``session/${aws:username}-*`` (a grant on ``instance/*`` would authorise none)."""
    alice = _person(aws, "alice", staging)
    tagged = _instance(staging, "stage-web-1")
    untagged = make_instance(staging, "stage-untagged-2", instance_id="i-0badc0ffee0000002")
    iam_check_instances(user=alice, account=staging, instances=[tagged], purpose="request")
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=alice, account=staging, instances=[tagged, untagged], purpose="request")
    assert caught.value.errors["instances"] == [
        f"Your IAM policy on {staging.name} does not allow ssm:StartSession on "
        f"{untagged.instance_id} (stage-untagged-2). {POLICY_POINTER}"
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("platform", ["linux", "windows"])
def test_credentials_are_checked_again_before_each_connection(world: World, settings: Any, platform: str) -> None:
    settings.PASSPORT_IAM_CHECK = False
    instance = world.web if platform == "linux" else world.windows
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[instance], reason="check the logs"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY)
    grant = Grant.objects.select_related("request__account", "instance").get(request=access_request)
    # The person's IAM mapping went away after the request was accepted.
    Membership.objects.filter(user=world.requester, account=world.prod).update(principal_arn="")
    settings.PASSPORT_IAM_CHECK = True
    with pytest.raises(RequestRuleError, match="no IAM principal"):
        if platform == "linux":
            services.grant_issue_certificate(grant=grant, user=world.requester, public_key="ssh-ed25519 AAAA test")
        else:
            services.grant_reveal_password(grant=grant, user=world.requester)
    purpose = "certificate" if platform == "linux" else "password"
    assert LogbookEntry.objects.filter(action="iam.checked", detail__purpose=purpose).exists()


# --- the instance's tags go to AWS as context: SimulatePrincipalPolicy evaluates only what it is given ---


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ALLOW_SESSIONS = {"Effect": "Allow", "Action": list(SESSION_ACTIONS), "Resource": "*"}
# Where AWS checks a session besides its instance: the session documents, and the person's own sessions.
DOCUMENTS_AND_OWN_SESSIONS = [
    {
        "Effect": "Allow",
        "Action": "ssm:StartSession",
        "Resource": [
            "arn:aws:ssm:*::document/AWS-StartSSHSession",
            "arn:aws:ssm:*::document/AWS-StartPortForwardingSession",
        ],
    },
    {"Effect": "Allow", "Action": "ssm:TerminateSession", "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*"},
]


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_a_deny_on_a_tag_refuses_the_tagged_instance_only(
    prod: AwsAccount, new_iam_user: tuple[User, Any, str]
) -> None:
    person, iam, name = new_iam_user
    no_prod = {
        "Effect": "Deny",
        "Action": "ssm:StartSession",
        "Resource": "arn:aws:ec2:*:*:instance/*",
        "Condition": {"StringEquals": {"ssm:resourceTag/Env": "prod"}},
    }
    iam.put_user_policy(UserName=name, PolicyName="NoProd", PolicyDocument=_policy(ALLOW_SESSIONS, no_prod))
    # Passport's inventory knows the tags; AWS is told them, it does not look them up.
    prod_box = make_instance(prod, "prod-box", tags={"Name": "prod-box", "Env": "prod"})
    dev_box = make_instance(prod, "dev-box", tags={"Name": "dev-box", "Env": "dev"})
    bare_box = make_instance(prod, "bare-box", tags={})

    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=prod, instances=[prod_box, dev_box, bare_box], purpose="request")
    assert caught.value.errors["instances"] == [
        f"Your IAM policy on {prod.name} explicitly denies ssm:StartSession on {prod_box.instance_id} (prod-box)."
    ]
    iam_check_instances(user=person, account=prod, instances=[dev_box, bare_box], purpose="request")


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_a_person_allowed_only_by_tag_reaches_the_tagged_instance(
    prod: AwsAccount, new_iam_user: tuple[User, Any, str]
) -> None:
    person, iam, name = new_iam_user
    by_tag = {
        "Effect": "Allow",
        "Action": "ssm:StartSession",
        "Resource": "arn:aws:ec2:*:*:instance/*",
        "Condition": {"StringEquals": {"aws:ResourceTag/Team": "red"}},
    }
    iam.put_user_policy(
        UserName=name, PolicyName="RedTeam", PolicyDocument=_policy(by_tag, *DOCUMENTS_AND_OWN_SESSIONS)
    )
    # Tag values are data: quotes, wildcards and newlines reach AWS as they are.
    red = make_instance(prod, "red-box", tags={"Team": "red", "Note": "a*b?\"c'\n<x>" + "v" * 240})
    blue = make_instance(prod, "blue-box", tags={"Team": "blue"})

    iam_check_instances(user=person, account=prod, instances=[red], purpose="request")
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=prod, instances=[red, blue], purpose="request")
    assert caught.value.errors["instances"] == [
        f"Your IAM policy on {prod.name} does not allow ssm:StartSession on {blue.instance_id} (blue-box). "
        + POLICY_POINTER
    ]


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_a_policy_needing_a_key_passport_cannot_give_is_refused_naming_it(
    prod: AwsAccount, new_iam_user: tuple[User, Any, str]
) -> None:
    person, iam, name = new_iam_user
    from_the_office_only = {
        "Effect": "Deny",
        "Action": "ssm:StartSession",
        "Resource": "*",
        "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
    }
    iam.put_user_policy(
        UserName=name, PolicyName="Office", PolicyDocument=_policy(ALLOW_SESSIONS, from_the_office_only)
    )
    web = _instance(prod, "web-1")
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person, account=prod, instances=[web], purpose="request")
    (message,) = caught.value.errors["instances"]
    assert "cannot confirm" in message and "aws:SourceIp" in message and web.instance_id in message
    entry = LogbookEntry.objects.filter(action="iam.checked").latest("id")
    assert entry.detail["allowed"] is False
    assert entry.detail["decisions"][web.instance_id]["missing_context"] == ["aws:SourceIp"]


@pytest.mark.integration
@pytest.mark.usefixtures("live_db")
def test_one_call_per_distinct_value_of_the_tags_the_policies_read(
    aws: Cloud, prod: AwsAccount, new_iam_user: tuple[User, Any, str], settings: Any
) -> None:
    """Not one call per instance: instances alike in the tags a policy reads are asked about together, with those."""
    person, iam, name = new_iam_user
    no_prod = {
        "Effect": "Deny",
        "Action": "ssm:StartSession",
        "Resource": "*",
        "Condition": {"StringEquals": {"ssm:resourceTag/Env": "prod"}},
    }
    iam.put_user_policy(UserName=name, PolicyName="NoProd", PolicyDocument=_policy(ALLOW_SESSIONS, no_prod))
    instances = [
        make_instance(prod, f"box-{n}", tags={"Team": f"team-{n}", "Env": "dev" if n % 2 else "staging"})
        for n in range(6)
    ]
    calls: list[dict[str, Any]] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    gateway: Any = fleet_for(prod)
    client = gateway._client("iam", settings.AWS_REGION)  # the portal role's shared client
    client.meta.events.register("provide-client-params.iam.SimulatePrincipalPolicy", count)
    try:
        iam_check_instances(user=person, account=prod, instances=instances, purpose="request")
    finally:
        client.meta.events.unregister("provide-client-params.iam.SimulatePrincipalPolicy", count)
    # Once for the documents and sessions (no tags), once for the three Env=dev instances and once
    # for the three Env=staging ones; Team, which differs on each but no policy reads, is not sent
    # and splits nothing. Every call carries the keys the person's IAM user implies.
    assert len(calls) == 3
    assert sorted(len(call["ResourceArns"]) for call in calls if "instance/" in call["ResourceArns"][0]) == [3, 3]
    sent = sorted(tuple(entry["ContextKeyName"] for entry in call["ContextEntries"]) for call in calls)
    principal = ("aws:CalledVia", "aws:PrincipalAccount", "aws:PrincipalArn", "aws:PrincipalType", "aws:username")
    tags = ("ssm:resourceTag/Env", "aws:ResourceTag/Env")
    assert sent == [principal, principal + tags, principal + tags]
