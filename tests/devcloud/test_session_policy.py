"""Assumed roles: credentials can do only what the role's own policies allow, and a session policy narrows that."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devcloud import iampolicy
from devcloud.iampolicy import PolicySource
from devcloud.seed import HANDOFF_KEY_ALIAS
from devcloud.server import DevCloud
from tests.devcloud.helpers import REGION, Aws


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _until(moment: dt.datetime) -> dict[str, Any]:
    return {"DateLessThan": {"aws:CurrentTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}}


def _assume(aws: Aws, role_arn: str, name: str, policy: str | None) -> Aws:
    extra = {"Policy": policy} if policy is not None else {}
    creds = aws.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=name, DurationSeconds=900, **extra)[
        "Credentials"
    ]
    return Aws(
        aws.endpoint_url,
        {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        },
    )


def _error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def _instances(manifest: dict[str, Any]) -> tuple[str, str, str]:
    account = manifest["accounts"][0]
    by_name = {item["name"]: item["id"] for item in manifest["instances"]}
    return account["role_arn"], by_name["web-1"], by_name["db-1"]


def _web_only(account_id: str, web: str, name: str, *, until: dt.datetime) -> str:
    return _policy(
        {
            "Effect": "Allow",
            "Action": "ssm:StartSession",
            "Resource": [
                f"arn:aws:ec2:{REGION}:{account_id}:instance/{web}",
                f"arn:aws:ssm:{REGION}::document/AWS-StartSSHSession",
            ],
            "Condition": _until(until),
        },
        {
            "Effect": "Allow",
            "Action": "ssm:TerminateSession",
            "Resource": f"arn:aws:ssm:{REGION}:{account_id}:session/{name}-*",
            "Condition": _until(until),
        },
    )


def test_scoped_credentials_reach_only_the_named_instance_and_document(
    aws: Aws, cloud: DevCloud, manifest: dict[str, Any]
) -> None:
    role_arn, web, db = _instances(manifest)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    scoped = _assume(
        aws, role_arn, "passport-scoped-alice", _web_only("111111111111", web, "passport-scoped-alice", until=later)
    )
    ssm = scoped.client("ssm")

    started = ssm.start_session(Target=web, DocumentName="AWS-StartSSHSession", Parameters={"portNumber": ["22"]})
    assert started["SessionId"].startswith("passport-scoped-alice-")
    session = cloud.runtime.sessions.get(started["SessionId"])
    assert session is not None and session.target == web

    code, message = _error(lambda: ssm.start_session(Target=db, DocumentName="AWS-StartSSHSession"))
    assert code == "AccessDeniedException"
    assert f"instance/{db}" in message and "session policy" in message
    # The right instance with a document the policy does not name.
    code, message = _error(lambda: ssm.start_session(Target=web, DocumentName="AWS-StartPortForwardingSession"))
    assert code == "AccessDeniedException" and "document/AWS-StartPortForwardingSession" in message
    # Every other action, of any service.
    code, _ = _error(
        lambda: ssm.send_command(InstanceIds=[web], DocumentName="AWS-RunShellScript", Parameters={"commands": ["id"]})
    )
    assert code == "AccessDeniedException"
    assert _error(lambda: ssm.describe_sessions(State="Active"))[0] == "AccessDeniedException"
    assert _error(lambda: scoped.client("ec2").describe_instances())[0] == "UnauthorizedOperation"
    assert _error(lambda: scoped.client("iam").list_users())[0] == "AccessDenied"
    # Who am I needs no permission, as in AWS.
    assert (
        scoped.client("sts").get_caller_identity()["Arn"].endswith("assumed-role/PassportPortal/passport-scoped-alice")
    )

    # Its own session can be ended; a session someone else started cannot.
    other = _assume(aws, role_arn, "passport-other", None).client("ssm")
    foreign = other.start_session(Target=db, DocumentName="AWS-StartSSHSession")["SessionId"]
    code, message = _error(lambda: ssm.terminate_session(SessionId=foreign))
    assert code == "AccessDeniedException" and f"session/{foreign}" in message
    foreign_session = cloud.runtime.sessions.get(foreign)
    assert foreign_session is not None and foreign_session.active
    ssm.terminate_session(SessionId=started["SessionId"])
    assert not session.active
    other.terminate_session(SessionId=foreign)


_DEFAULT_DOCUMENT = f"arn:aws:ssm:{REGION}:111111111111:document/SSM-SessionManagerRunShell"
_CHECK = {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}


@pytest.mark.parametrize(
    ("condition", "resources", "default_allowed"),
    [
        # AWS: a session naming no document runs the account's default one, which a policy
        # allowing the instance allows implicitly...
        ({}, [], True),
        # ...unless the statement asks for the document check: then the default document
        # must be allowed itself (Systems Manager User Guide, "Start a default shell session by
        # specifying the default session document in IAM policies").
        (_CHECK, [], False),
        (_CHECK, [_DEFAULT_DOCUMENT], True),
        # The default document's ARN is the account's own: an AWS-owned ARN of it is not it.
        (_CHECK, [f"arn:aws:ssm:{REGION}::document/SSM-SessionManagerRunShell"], False),
    ],
)
def test_a_session_naming_no_document_is_asked_about_the_default_one_only_when_a_policy_says_so(
    aws: Aws,
    cloud: DevCloud,
    manifest: dict[str, Any],
    condition: dict[str, Any],
    resources: list[str],
    default_allowed: bool,
) -> None:
    _, web, _ = _instances(manifest)
    name = f"doc-check-{uuid.uuid4().hex[:6]}"
    # A role IAM does not know (devcloud, as moto, lets it be assumed): only the session policy applies.
    role_arn = f"arn:aws:iam::111111111111:role/{name}"
    policy = _policy(
        {
            "Effect": "Allow",
            "Action": ["ssm:StartSession", "ssm:TerminateSession"],
            "Resource": [
                f"arn:aws:ec2:{REGION}:111111111111:instance/{web}",
                f"arn:aws:ssm:{REGION}::document/AWS-StartSSHSession",
                f"arn:aws:ssm:{REGION}:111111111111:session/{name}-*",
                *resources,
            ],
            **({"Condition": condition} if condition else {}),
        }
    )
    ssm = _assume(aws, role_arn, name, policy).client("ssm")
    if default_allowed:
        started = ssm.start_session(Target=web)["SessionId"]
        session = cloud.runtime.sessions.get(started)
        assert session is not None and session.document_name == "SSM-SessionManagerRunShell"
        ssm.terminate_session(SessionId=started)
    else:
        code, message = _error(lambda: ssm.start_session(Target=web))
        assert code == "AccessDeniedException"
        assert "document/SSM-SessionManagerRunShell" in message
    # A document named is always asked about, whatever the condition says.
    named = ssm.start_session(Target=web, DocumentName="AWS-StartSSHSession")["SessionId"]
    ssm.terminate_session(SessionId=named)
    code, _ = _error(lambda: ssm.start_session(Target=web, DocumentName="AWS-StartPortForwardingSession"))
    assert code == "AccessDeniedException"


def test_the_current_time_cut_off_ends_the_credentials(aws: Aws, manifest: dict[str, Any]) -> None:
    role_arn, web, _ = _instances(manifest)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    expired = _assume(aws, role_arn, "cut-off", _web_only("111111111111", web, "cut-off", until=earlier))
    code, _ = _error(lambda: expired.client("ssm").start_session(Target=web, DocumentName="AWS-StartSSHSession"))
    assert code == "AccessDeniedException"


def test_the_role_s_own_policy_still_limits_the_session(aws: Aws) -> None:
    """A session policy narrows the role; it never adds what the role lacks."""
    iam = aws.client("iam")
    trust = _policy({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
    role_arn = iam.create_role(RoleName="InventoryOnly", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(
        RoleName="InventoryOnly",
        PolicyName="Describe",
        PolicyDocument=_policy({"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}),
    )
    target = aws.launch("session-policy-target")
    everything = _policy({"Effect": "Allow", "Action": ["ssm:*", "ec2:*"], "Resource": "*"})
    scoped = _assume(aws, role_arn, "inventory", everything)

    assert isinstance(scoped.client("ec2").describe_instances()["Reservations"], list)
    code, message = _error(lambda: scoped.client("ssm").start_session(Target=target))
    assert code == "AccessDeniedException" and "identity-based" in message


def test_credentials_without_a_session_policy_have_the_role_s_policy(aws: Aws, manifest: dict[str, Any]) -> None:
    role_arn, web, _ = _instances(manifest)
    full = _assume(aws, role_arn, "passport-full", None)
    assert full.client("ec2").describe_instances()["Reservations"]
    session_id = full.client("ssm").start_session(Target=web, DocumentName="AWS-StartSSHSession")["SessionId"]
    full.client("ssm").terminate_session(SessionId=session_id)
    # The role ends only passport-* sessions: the same role under another session name cannot end its own.
    other = _assume(aws, role_arn, "someone-else", None).client("ssm")
    foreign = other.start_session(Target=web, DocumentName="AWS-StartSSHSession")["SessionId"]
    code, message = _error(lambda: other.terminate_session(SessionId=foreign))
    assert code == "AccessDeniedException" and "identity-based" in message
    _assume(aws, manifest["accounts"][0]["admin_role_arn"], "admin", None).client("ssm").terminate_session(
        SessionId=foreign
    )


def test_the_portal_role_s_policy_allows_every_call_the_portal_makes_and_nothing_else(
    aws: Aws, manifest: dict[str, Any]
) -> None:
    """The demo's PassportPortal role has exactly accounts/policies/PassportPortalRole.json; devcloud enforces it."""
    role_arn, web, _ = _instances(manifest)
    portal = _assume(aws, role_arn, "passport-portal", None)
    ssm, ec2, iam = portal.client("ssm"), portal.client("ec2"), portal.client("iam")
    handoff = f"/passport/handoff/{uuid.uuid4()}"

    # Every call fleet/aws/ makes with the role.
    assert ec2.describe_instances()["Reservations"]
    assert ssm.describe_instance_information()["InstanceInformationList"]
    command_id = ssm.send_command(
        InstanceIds=[web], DocumentName="AWS-RunShellScript", Parameters={"commands": ["sleep 30"]}
    )["Command"]["CommandId"]
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=web)["CommandId"] == command_id
    assert ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"]
    ssm.cancel_command(CommandId=command_id)
    ssm.put_parameter(Name=handoff, Value="sealed", Type="SecureString")
    ssm.delete_parameter(Name=handoff)
    # Under the account's own hand-off key (scripts/demo's PASSPORT_HANDOFF_KMS_KEY): kms:Encrypt too.
    ssm.put_parameter(Name=handoff, Value="sealed", Type="SecureString", KeyId=HANDOFF_KEY_ALIAS)
    ssm.delete_parameter(Name=handoff)
    session_id = ssm.start_session(Target=web, DocumentName="AWS-StartSSHSession")["SessionId"]
    assert ssm.describe_sessions(State="Active", Filters=[{"key": "SessionId", "value": session_id}])["Sessions"]
    ssm.terminate_session(SessionId=session_id)
    alice = manifest["principals"]["alice"]["111111111111"]
    assert iam.simulate_principal_policy(PolicySourceArn=alice, ActionNames=["ssm:StartSession"])["EvaluationResults"]

    # What it must not do, though moto would.
    code, message = _error(lambda: ssm.put_parameter(Name="/elsewhere/secret", Value="v", Type="SecureString"))
    assert code == "AccessDeniedException" and "parameter/elsewhere/secret" in message
    ssm.put_parameter(Name=handoff, Value="sealed", Type="SecureString")
    assert _error(lambda: ssm.get_parameter(Name=handoff, WithDecryption=True))[0] == "AccessDeniedException"
    ssm.delete_parameter(Name=handoff)
    assert _error(lambda: ssm.start_session(Target=web))[0] == "AccessDeniedException"  # SSM-SessionManagerRunShell
    assert _error(lambda: iam.create_user(UserName=f"intruder-{uuid.uuid4().hex[:6]}"))[0] == "AccessDenied"
    assert _error(lambda: ec2.terminate_instances(InstanceIds=[web]))[0] == "UnauthorizedOperation"


@pytest.mark.parametrize(
    "operator, limit, allowed",
    [
        ("DateLessThan", "2030-01-01T00:00:00Z", True),
        ("DateLessThan", "2020-01-01T00:00:00Z", False),
        ("DateGreaterThan", "2020-01-01T00:00:00Z", True),
        ("DateLessThanEquals", "2026-06-01T12:00:00Z", True),
        ("DateGreaterThanEquals", "2026-06-01T12:00:01Z", False),
        ("DateEquals", "2026-06-01T12:00:00+00:00", True),
        ("DateNotEquals", "2026-06-01T12:00:00Z", False),
        ("DateLessThan", "1924992000", True),  # epoch seconds: 2031-01-01
        ("DateLessThan", "not a time", False),
    ],
)
def test_date_conditions(operator: str, limit: str, allowed: bool) -> None:
    source = PolicySource(
        "p",
        "none",
        _policy(
            {
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": "*",
                "Condition": {operator: {"aws:CurrentTime": limit}},
            }
        ),
    )
    decision = iampolicy.evaluate([source], "ssm:StartSession", "*", {"aws:CurrentTime": ["2026-06-01T12:00:00Z"]})
    assert (decision.decision == iampolicy.ALLOWED) is allowed
