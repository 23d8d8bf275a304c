"""The IAM check asks about every resource AWS checks a Session Manager session on.

StartSession: the instance and the session document (a Deny on a document is a person's "no
tunnels"). TerminateSession: a session of the person's own, the only resource it has, so AWS's
documented end-user policy (``session/${aws:username}-*``) is enough, and a grant on instances
is not. Against devcloud, which answers SimulatePrincipalPolicy as AWS documents it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import AwsAccount, Membership, User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import fleet_for
from requests_app import services
from requests_app.iam import iam_check_instances
from requests_app.iam.refusals import POLICY_POINTER
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from ssmchannel.documents import PORT_FORWARDING_DOCUMENT, SSH_DOCUMENT
from tests.factories import make_user
from tests.requests_app.test_iam import _account, _iam_client, _instance
from tests.stack import Cloud

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]

START_INSTANCES = {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ec2:*:*:instance/*"}
START_DOCUMENTS = {
    "Effect": "Allow",
    "Action": "ssm:StartSession",
    "Resource": [f"arn:aws:ssm:*::document/{SSH_DOCUMENT}", f"arn:aws:ssm:*::document/{PORT_FORWARDING_DOCUMENT}"],
}
# AWS's sample end-user policy: people end (and resume) only the sessions they started.
END_OWN = {
    "Effect": "Allow",
    "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
    "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*",
}
NO_TUNNELS = {
    "Effect": "Deny",
    "Action": "ssm:StartSession",
    "Resource": f"arn:aws:ssm:*::document/{PORT_FORWARDING_DOCUMENT}",
}


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(autouse=True)
def iam_check_on(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def prod(aws: Cloud) -> AwsAccount:
    account = _account(aws, "Acme Production")
    # The person's own CLI sessions go straight to AWS: SSH and forwards are both theirs to start.
    AwsAccount.objects.filter(pk=account.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    account.refresh_from_db()
    return account


@dataclass
class Person:
    user: User
    iam: Any
    name: str
    arn: str

    def policy(self, *statements: dict[str, Any]) -> None:
        self.iam.put_user_policy(UserName=self.name, PolicyName="Sessions", PolicyDocument=doc(*statements))


@pytest.fixture
def person(aws: Cloud, prod: AwsAccount) -> Iterator[Person]:
    """A fresh IAM user in prod (name unique per test) mapped to a fresh Passport person."""
    iam = _iam_client(aws, prod)
    name = f"iam-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    user = make_user(name)
    Membership.objects.create(user=user, account=prod, role="admin", principal_arn=arn)
    yield Person(user, iam, name, arn)
    for policy in iam.list_user_policies(UserName=name)["PolicyNames"]:
        iam.delete_user_policy(UserName=name, PolicyName=policy)
    for attached in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]:
        iam.detach_user_policy(UserName=name, PolicyArn=attached["PolicyArn"])
    iam.delete_user(UserName=name)


def _ready_grant(person: Person, account: AwsAccount, instance: Instance, settings: Any) -> Grant:
    """An active request with its grant ready, made while IAM allowed it (provisioning is tested elsewhere)."""
    settings.PASSPORT_IAM_CHECK = False
    access_request = services.access_request_create(
        requester=person.user, account=account, instances=[instance], reason="look at the logs"
    )
    settings.PASSPORT_IAM_CHECK = True
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    return Grant.objects.select_related("request__account", "request__requester", "instance").get(
        request=access_request
    )


def _last_check() -> LogbookEntry:
    return LogbookEntry.objects.filter(action="iam.checked").latest("id")


def test_a_deny_on_the_forwarding_document_refuses_the_forward_and_lets_ssh_start(
    prod: AwsAccount, person: Person, settings: Any
) -> None:
    """AdministratorAccess, but no tunnels: AWS would refuse StartSession with the forwarding document."""
    person.iam.attach_user_policy(UserName=person.name, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    person.policy(NO_TUNNELS)
    web = _instance(prod, "web-1")
    grant = _ready_grant(person, prod, web, settings)

    started = services.grant_start_session(grant=grant, user=person.user, document=SSH_DOCUMENT, port=22, via="cli")
    fleet_for(prod).terminate_session(started["SessionId"], web.region)

    with pytest.raises(RequestRuleError) as caught:
        services.grant_start_session(grant=grant, user=person.user, document=PORT_FORWARDING_DOCUMENT, via="cli")
    assert caught.value.errors["instances"] == [
        f"Your IAM policy on {prod.name} explicitly denies ssm:StartSession with the session document "
        f"{PORT_FORWARDING_DOCUMENT}, which sessions to {web.instance_id} (web-1) need."
    ]
    entry = _last_check()
    assert (entry.detail["purpose"], entry.detail["allowed"]) == ("session", False)
    resources = entry.detail["decisions"][web.instance_id]["resources"]
    assert resources[f"arn:aws:ssm:{web.region}::document/{PORT_FORWARDING_DOCUMENT}"] == "explicitDeny"
    assert resources[web.arn] == "allowed"
    # Nothing was started for it.
    started_entries = LogbookEntry.objects.filter(action="session.started", request_id=grant.request_id)
    assert [entry.detail["document"] for entry in started_entries] == [SSH_DOCUMENT]


def test_each_platform_is_asked_about_its_own_document_when_the_request_is_made(
    aws: Cloud, prod: AwsAccount, person: Person
) -> None:
    """Linux: AWS-StartSSHSession; Windows: AWS-StartPortForwardingSession (Remote Desktop is a forward)."""
    person.policy(START_INSTANCES, START_DOCUMENTS, END_OWN, NO_TUNNELS)
    web, windows = _instance(prod, "web-1"), _instance(prod, "win-ad-1")

    iam_check_instances(user=person.user, account=prod, instances=[web], purpose="request")
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person.user, account=prod, instances=[web, windows], purpose="request")
    (message,) = caught.value.errors["instances"]
    assert windows.instance_id in message and PORT_FORWARDING_DOCUMENT in message
    # AWS credentials can start either document: both are asked about.
    with pytest.raises(RequestRuleError):
        iam_check_instances(user=person.user, account=prod, instances=[web], purpose="credentials")


def test_aws_documented_end_user_policy_is_enough(prod: AwsAccount, person: Person, settings: Any) -> None:
    """StartSession on the instance and the SSH document, TerminateSession on ``session/${aws:username}-*``."""
    web = _instance(prod, "web-1")
    person.policy(
        {
            "Effect": "Allow",
            "Action": "ssm:StartSession",
            "Resource": [web.arn, f"arn:aws:ssm:*::document/{SSH_DOCUMENT}"],
        },
        END_OWN,
    )
    calls: list[dict[str, Any]] = []
    client = fleet_for(prod)._client("iam", settings.AWS_REGION)  # type: ignore[attr-defined]
    record = lambda params, **_: calls.append(params)  # noqa: E731
    client.meta.events.register("provide-client-params.iam.SimulatePrincipalPolicy", record)
    try:
        iam_check_instances(user=person.user, account=prod, instances=[web], purpose="request")
    finally:
        client.meta.events.unregister("provide-client-params.iam.SimulatePrincipalPolicy", record)

    # The session asked about is one this IAM user would have started; its name went with it, as AWS fills it in.
    own = f"arn:aws:ssm:{web.region}:{prod.account_id}:session/{person.name}-0123456789abcdef0"
    (asked,) = [call for call in calls if own in call["ResourceArns"]]  # with the untagged resources
    sent = {entry["ContextKeyName"]: entry["ContextKeyValues"] for entry in asked["ContextEntries"]}
    assert sent["aws:username"] == [person.name] and sent["aws:PrincipalArn"] == [person.arn]
    entry = _last_check()
    assert entry.detail["allowed"] and entry.detail["decisions"][web.instance_id]["resources"][own] == "allowed"


def test_terminate_session_granted_on_instances_allows_no_session(prod: AwsAccount, person: Person) -> None:
    """TerminateSession's only resource is a session: on ``instance/*`` it never authorises one."""
    web = _instance(prod, "web-1")
    person.policy(
        {
            "Effect": "Allow",
            "Action": ["ssm:StartSession", "ssm:TerminateSession"],
            "Resource": "arn:aws:ec2:*:*:instance/*",
        },
        START_DOCUMENTS,
    )
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person.user, account=prod, instances=[web], purpose="request")
    assert caught.value.errors["instances"] == [
        f"Your IAM policy on {prod.name} does not allow ssm:TerminateSession on your own sessions "
        f"(arn:aws:ssm:{web.region}:{prod.account_id}:session/{person.name}-*), which sessions to "
        f"{web.instance_id} (web-1) need. {POLICY_POINTER}"
    ]


def test_a_policy_naming_only_the_instance_is_refused_pointing_at_the_policy_passport_ships(
    prod: AwsAccount, person: Person
) -> None:
    """Start and end allowed on the instance alone (as a short description of the rule reads): AWS
    also checks the session document and the person's sessions, so it is refused, and the refusal
    names the policy that allows all three."""
    web = _instance(prod, "web-1")
    person.policy(
        {
            "Effect": "Allow",
            "Action": ["ssm:StartSession", "ssm:TerminateSession"],
            "Resource": f"arn:aws:ec2:{web.region}:{prod.account_id}:instance/{web.instance_id}",
        }
    )
    with pytest.raises(RequestRuleError) as caught:
        iam_check_instances(user=person.user, account=prod, instances=[web], purpose="request")
    (message,) = caught.value.errors["instances"]
    assert "session document AWS-StartSSHSession" in message and "your own sessions" in message
    assert message.endswith(" Passport's accounts/policies/PassportOnly.json allows what sessions need.")


def test_a_role_is_asked_about_the_sessions_passport_names_for_the_person(
    aws: Cloud, prod: AwsAccount, person: Person
) -> None:
    """A role session has no aws:username, and Passport cannot give aws:userid: such a policy is not confirmed."""
    iam, suffix = person.iam, uuid.uuid4().hex[:8]
    trust = doc({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
    role = iam.create_role(RoleName=f"operators-{suffix}", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    Membership.objects.filter(user=person.user, account=prod).update(principal_arn=role)
    web = _instance(prod, "web-1")

    def with_policy(end: dict[str, Any]) -> None:
        iam.put_role_policy(
            RoleName=f"operators-{suffix}",
            PolicyName="Sessions",
            PolicyDocument=doc(START_INSTANCES, START_DOCUMENTS, end),
        )
        iam_check_instances(user=person.user, account=prod, instances=[web], purpose="request")

    try:
        with pytest.raises(RequestRuleError) as caught:
            with_policy({**END_OWN, "Resource": "arn:aws:ssm:*:*:session/${aws:userid}-*"})
        (message,) = caught.value.errors["instances"]
        assert "cannot confirm" in message and "aws:userid" in message
        with pytest.raises(RequestRuleError) as caught:
            with_policy(END_OWN)  # no aws:username for a role: nothing it names is one of its sessions
        own = f"arn:aws:ssm:{web.region}:{prod.account_id}:session/passport-r0-u{person.user.pk}"
        assert caught.value.errors["instances"] == [
            f"Your IAM policy on {prod.name} does not allow ssm:TerminateSession on your own sessions ({own}-*), "
            f"which sessions to {web.instance_id} (web-1) need. {POLICY_POINTER}"
        ]
        with_policy({**END_OWN, "Resource": "arn:aws:ssm:*:*:session/passport-*"})
        resources = _last_check().detail["decisions"][web.instance_id]["resources"]
        assert (
            f"arn:aws:ssm:{web.region}:{prod.account_id}:session/passport-r0-u{person.user.pk}-0123456789abcdef0"
            in (resources)
        )
    finally:
        iam.delete_role_policy(RoleName=f"operators-{suffix}", PolicyName="Sessions")
        iam.delete_role(RoleName=f"operators-{suffix}")


def test_a_permissions_boundary_refuses_passport_access(aws: Cloud, prod: AwsAccount, person: Person) -> None:
    iam, suffix = person.iam, uuid.uuid4().hex[:8]
    boundary = iam.create_policy(
        PolicyName=f"describe-only-{suffix}",
        PolicyDocument=doc({"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}),
    )["Policy"]["Arn"]
    iam.put_user_permissions_boundary(UserName=person.name, PermissionsBoundary=boundary)
    iam.attach_user_policy(UserName=person.name, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    web = _instance(prod, "web-1")
    try:
        with pytest.raises(RequestRuleError) as caught:
            iam_check_instances(user=person.user, account=prod, instances=[web], purpose="request")
    finally:
        iam.detach_user_policy(UserName=person.name, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
        iam.delete_user_permissions_boundary(UserName=person.name)
    (message,) = caught.value.errors["instances"]
    assert f"does not allow ssm:StartSession on {web.instance_id} (web-1)" in message
