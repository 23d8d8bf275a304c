"""Scoped AWS credentials: the session policy, its duration, the endpoint, and what AWS (devcloud) lets them do.

The devcloud enforces session policies, so "refused on another instance" is AWS's answer, not the portal's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from django.utils import timezone
from moto.sts.models import sts_backends
from rest_framework.test import APIClient

from accounts.models import AwsAccount, User
from audit.models import LogbookEntry
from fleet import FleetError, fleet_for
from fleet.aws.credentials import scoped_duration_seconds, scoped_session_policy
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.factories import make_membership, make_user
from tests.stack import Cloud, synced_account

ACCOUNT = "111111111111"
NOT_AFTER = datetime(2026, 11, 25, 10, 30, 45, 999999, tzinfo=UTC)


# --- the session policy, a pure function -----------------------------------------------


def test_policy_allows_start_session_on_the_instances_and_documents_and_ending_own_sessions() -> None:
    document = scoped_session_policy(
        account_id=ACCOUNT,
        instances=[("us-east-1", "i-0bbbbbbbbbbbbbbbb"), ("eu-west-1", "i-0aaaaaaaaaaaaaaaa")],
        role_session_name="passport-r7-u3",
        not_after=NOT_AFTER,
    )
    policy = json.loads(document)
    start, terminate = policy["Statement"]
    assert (start["Effect"], start["Action"]) == ("Allow", "ssm:StartSession")
    assert start["Resource"] == [
        "arn:aws:ec2:eu-west-1:111111111111:instance/i-0aaaaaaaaaaaaaaaa",
        "arn:aws:ec2:us-east-1:111111111111:instance/i-0bbbbbbbbbbbbbbbb",
        "arn:aws:ssm:eu-west-1::document/AWS-StartSSHSession",
        "arn:aws:ssm:eu-west-1::document/AWS-StartPortForwardingSession",
        "arn:aws:ssm:us-east-1::document/AWS-StartSSHSession",
        "arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession",
    ]
    assert (terminate["Effect"], terminate["Action"]) == ("Allow", "ssm:TerminateSession")
    assert terminate["Resource"] == [
        "arn:aws:ssm:eu-west-1:111111111111:session/passport-r7-u3-*",
        "arn:aws:ssm:us-east-1:111111111111:session/passport-r7-u3-*",
    ]
    # Cut off at the request's end, truncated to the second (early, never late).
    cut_off = {"DateLessThan": {"aws:CurrentTime": "2026-11-25T10:30:45Z"}}
    assert terminate["Condition"] == cut_off
    # A session naming no document is asked about the default document too, which is not allowed.
    assert start["Condition"] == {**cut_off, "BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}}
    assert len(policy["Statement"]) == 2  # nothing else is allowed
    # Deterministic: the same request gives the same document, whatever the order of its instances.
    again = scoped_session_policy(
        account_id=ACCOUNT,
        instances=[("eu-west-1", "i-0aaaaaaaaaaaaaaaa"), ("us-east-1", "i-0bbbbbbbbbbbbbbbb")],
        role_session_name="passport-r7-u3",
        not_after=NOT_AFTER,
    )
    assert again == document


def test_policy_converts_the_cut_off_to_utc() -> None:
    from zoneinfo import ZoneInfo

    local = NOT_AFTER.astimezone(ZoneInfo("Europe/Paris"))
    document = scoped_session_policy(
        account_id=ACCOUNT, instances=[("us-east-1", "i-0123456789abcdef0")], role_session_name="p-1", not_after=local
    )
    assert '"aws:CurrentTime":"2026-11-25T10:30:45Z"' in document


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"instances": []}, "at least one instance"),
        ({"instances": [("us-east-1", "i-*")]}, "not a region and an instance id"),
        ({"instances": [("us-east-*", "i-0123456789abcdef0")]}, "not a region and an instance id"),
        ({"instances": [("us-east-1", "i-0123456789abcdef0\n")]}, "not a region and an instance id"),
        ({"role_session_name": "passport-*"}, "RoleSessionName"),
        ({"role_session_name": "passport-r1-u1\n"}, "RoleSessionName"),
        ({"account_id": "11111111111*"}, "account id"),
        ({"not_after": datetime(2026, 11, 25, 10, 30)}, "aware"),
        ({"instances": [("us-east-1", f"i-{n:017x}") for n in range(40)]}, "2048 characters"),
    ],
)
def test_policy_refuses_bad_input(changes: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "account_id": ACCOUNT,
        "instances": [("us-east-1", "i-0123456789abcdef0")],
        "role_session_name": "passport-r1-u1",
        "not_after": NOT_AFTER,
        **changes,
    }
    with pytest.raises(ValueError, match=message):
        scoped_session_policy(**arguments)


@pytest.mark.parametrize(
    "remaining, maximum, expected",
    [
        (timedelta(hours=2), 3600, 3600),  # the role's maximum
        (timedelta(minutes=30), 3600, 1800),  # exactly what is left
        (timedelta(seconds=1800.2), 3600, 1801),  # rounded up: the policy's cut-off ends them on time
        (timedelta(minutes=5), 3600, 900),  # AWS's minimum; the cut-off ends them at the request's end
        (timedelta(hours=5), 43200, 18000),  # a role allowing longer sessions
        (timedelta(hours=2), 600, 900),  # a maximum below AWS's minimum cannot be asked for
    ],
)
def test_duration(remaining: timedelta, maximum: int, expected: int) -> None:
    assert scoped_duration_seconds(remaining=remaining, maximum=maximum) == expected


# --- against devcloud -------------------------------------------------------------------


@dataclass
class Scene:
    prod: AwsAccount
    alice: User  # the requester
    approver: User  # sees the request, is not its requester
    outsider: User
    web: Instance
    db: Instance
    request: AccessRequest


def _activate(access_request: AccessRequest, *, remaining: timedelta) -> AccessRequest:
    """Where provisioning leaves a request: active, its grants ready (the provisioning itself is tested elsewhere)."""
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + remaining
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    access_request.refresh_from_db()
    return access_request


@pytest.fixture
def scene(aws: Cloud, db: None, settings: Any) -> Scene:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PASSPORT_IAM_CHECK = True  # devcloud answers SimulatePrincipalPolicy from the seeded IAM users
    prod = synced_account(aws, "Acme Production")
    # AWS credentials open sessions of their own: only an account whose CLI sessions are direct issues them.
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    prod.refresh_from_db()
    alice, approver, outsider = make_user("alice"), make_user("bob"), make_user("mallory")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    web = Instance.objects.get(account=prod, name="web-1")
    db_host = Instance.objects.get(account=prod, name="db-1")
    access_request = services.access_request_create(
        requester=alice, account=prod, instances=[web], reason="read the nginx logs"
    )
    return Scene(prod, alice, approver, outsider, web, db_host, _activate(access_request, remaining=timedelta(hours=2)))


def _signed_in(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _clients(aws: Cloud, body: dict[str, Any]) -> tuple[Any, Any]:
    keys = {
        "aws_access_key_id": body["access_key_id"],
        "aws_secret_access_key": body["secret_access_key"],
        "aws_session_token": body["session_token"],
    }
    make = lambda service: boto3.client(  # noqa: E731
        service, endpoint_url=aws.endpoint_url, region_name=body["region"], **keys
    )
    return make("ssm"), make("ec2")


def _code(call: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    return str(raised.value.response["Error"]["Code"])


def test_endpoint_issues_credentials_that_reach_only_the_request_s_instance(
    scene: Scene, aws: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = _signed_in(scene.alice).post(f"/api/requests/{scene.request.pk}/credentials/")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    process = body["credential_process"]
    assert process == {
        "Version": 1,
        "AccessKeyId": body["access_key_id"],
        "SecretAccessKey": body["secret_access_key"],
        "SessionToken": body["session_token"],
        "Expiration": body["expiration"],
    }
    assert body["region"] == "us-east-1"
    assert body["role_session_name"] == f"passport-r{scene.request.pk}-u{scene.alice.pk}"
    assert scene.request.expires_at is not None
    assert datetime.fromisoformat(body["expiration"]) <= scene.request.expires_at

    # What AWS was asked for: the role, narrowed by exactly the policy for this request.
    assumed = sts_backends[ACCOUNT]["aws"].get_assumed_role_from_access_key(body["access_key_id"])
    assert assumed is not None and assumed.role_arn == scene.prod.role_arn
    # Fifteen minutes, though two hours remain: they cannot be revoked, so they are kept short
    # (credential_process renews them while the request is active).
    assert _lifetime(assumed) == 900
    assert assumed.policy == scoped_session_policy(
        account_id=ACCOUNT,
        instances=[("us-east-1", scene.web.instance_id)],
        role_session_name=body["role_session_name"],
        not_after=scene.request.expires_at,
    )

    ssm, ec2 = _clients(aws, body)
    started = ssm.start_session(
        Target=scene.web.instance_id, DocumentName="AWS-StartSSHSession", Parameters={"portNumber": ["22"]}
    )
    assert started["SessionId"].startswith(body["role_session_name"] + "-")
    ssm.terminate_session(SessionId=started["SessionId"])
    session = aws.devcloud.runtime.sessions.get(started["SessionId"])
    assert session is not None and not session.active
    # Another instance of the same account, another document, any other action: AWS refuses.
    assert _code(lambda: ssm.start_session(Target=scene.db.instance_id, DocumentName="AWS-StartSSHSession")) == (
        "AccessDeniedException"
    )
    assert _code(lambda: ssm.start_session(Target=scene.web.instance_id)) == "AccessDeniedException"
    assert (
        _code(
            lambda: ssm.send_command(
                InstanceIds=[scene.web.instance_id],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["id"]},
            )
        )
        == "AccessDeniedException"
    )
    assert _code(lambda: ec2.describe_instances()) == "UnauthorizedOperation"

    # The Logbook knows the key id and the expiry; the secret and token are nowhere, nor in the logs.
    issued = LogbookEntry.objects.get(action="credentials.issued", request_id=scene.request.pk)
    assert issued.actor_label == "alice"
    assert issued.detail["access_key_id"] == body["access_key_id"]
    assert datetime.fromisoformat(issued.detail["expiration"]) == datetime.fromisoformat(body["expiration"])
    assert issued.instance_ids.split() == [scene.web.instance_id]
    checked = LogbookEntry.objects.filter(action="iam.checked", request_id=None).order_by("-id").first()
    assert checked is not None and checked.detail["purpose"] == "credentials" and checked.detail["allowed"]
    everything = json.dumps([[e.action, e.detail, e.instance_ids] for e in LogbookEntry.objects.all()], default=str)
    assert body["access_key_id"] in everything
    for secret in (body["secret_access_key"], body["session_token"]):
        assert secret not in everything
        assert secret not in caplog.text


def _lifetime(assumed: Any) -> int:
    """About the DurationSeconds STS was asked for: its recorded expiry, seen from now.

    Only to tell 900 from 3600 or 7200; the call just made takes seconds, not minutes.
    """
    left = (assumed.expiration.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    return next(duration for duration in (900, 3600, 7200) if abs(left - duration) < 120)


def test_longer_lived_credentials_are_a_setting(scene: Scene, settings: Any) -> None:
    settings.PASSPORT_SCOPED_CREDENTIALS_SECONDS = 3600
    body = _signed_in(scene.alice).post(f"/api/requests/{scene.request.pk}/credentials/").json()
    assumed = sts_backends[ACCOUNT]["aws"].get_assumed_role_from_access_key(body["access_key_id"])
    assert assumed is not None and _lifetime(assumed) == 3600  # the role's maximum, under the 2 h left


def test_a_short_remainder_still_gets_credentials_that_end_with_the_request(scene: Scene) -> None:
    access_request = _activate(scene.request, remaining=timedelta(minutes=5))
    body = _signed_in(scene.alice).post(f"/api/requests/{access_request.pk}/credentials/").json()
    assert access_request.expires_at is not None
    # STS gave 900 s (its minimum); they are reported, and the policy cuts them off, at the request's end.
    assert datetime.fromisoformat(body["expiration"]) == access_request.expires_at.replace(microsecond=0)
    assumed = sts_backends[ACCOUNT]["aws"].get_assumed_role_from_access_key(body["access_key_id"])
    assert assumed is not None
    cut_off = json.loads(assumed.policy)["Statement"][0]["Condition"]["DateLessThan"]["aws:CurrentTime"]
    assert cut_off == access_request.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_endpoint_rules(scene: Scene) -> None:
    url = f"/api/requests/{scene.request.pk}/credentials/"
    # Someone who sees the request but did not ask for it: 403; someone who cannot see it: 404.
    refused = _signed_in(scene.approver).post(url)
    # (permissions.use_access_refusal: the words every use of access shares)
    assert refused.status_code == 403 and "Only the person who asked" in refused.json()["detail"]
    assert _signed_in(scene.outsider).post(url).status_code == 404
    assert APIClient().post(url).status_code in (401, 403)
    # Under a minute left, or not active: 409.
    _activate(scene.request, remaining=timedelta(seconds=30))
    assert _signed_in(scene.alice).post(url).status_code == 409
    pending = services.access_request_create(
        requester=scene.alice, account=scene.prod, instances=[scene.db], reason="later"
    )
    not_yet = _signed_in(scene.alice).post(f"/api/requests/{pending.pk}/credentials/")
    assert not_yet.status_code == 409 and "active" in not_yet.json()["detail"]
    assert not LogbookEntry.objects.filter(action="credentials.issued").exists()


def test_past_the_end_they_are_refused_as_for_an_ended_request_though_nothing_swept_it(scene: Scene) -> None:
    access_request = _activate(scene.request, remaining=-timedelta(minutes=5))
    assert access_request.status == RequestStatus.ACTIVE  # the expiry sweep has not run
    refused = _signed_in(scene.alice).post(f"/api/requests/{access_request.pk}/credentials/")
    assert refused.status_code == 409
    assert refused.json()["detail"] == "AWS credentials are issued only while the request is active."
    assert not LogbookEntry.objects.filter(action="credentials.issued").exists()


def test_iam_refusal_is_checked_like_the_other_credentials(scene: Scene, settings: Any) -> None:
    oscar = make_user("oscar")  # ReadOnlyInventory in devcloud's prod: no Session Manager
    make_membership(oscar, scene.prod, "admin")
    settings.PASSPORT_IAM_CHECK = False  # as if IAM had allowed it when the request was made
    own = _activate(
        services.access_request_create(requester=oscar, account=scene.prod, instances=[scene.web], reason="look"),
        remaining=timedelta(hours=1),
    )
    settings.PASSPORT_IAM_CHECK = True
    refused = _signed_in(oscar).post(f"/api/requests/{own.pk}/credentials/")
    assert refused.status_code == 400
    assert "ssm:StartSession" in json.dumps(refused.json())
    assert not LogbookEntry.objects.filter(action="credentials.issued").exists()


def test_cli_sessions_are_started_with_scoped_credentials(scene: Scene, aws: Cloud) -> None:
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    url = f"/api/requests/{scene.request.pk}/grants/{scene.web.instance_id}/session/"
    response = _signed_in(scene.alice).post(url, {"document": "AWS-StartSSHSession"}, format="json")
    assert response.status_code == 201, response.content
    session = aws.devcloud.runtime.sessions.get(response.json()["session_id"])
    assert session is not None
    # The role session that started it is the person's scoped one, not the portal's own.
    assert session.owner == (
        f"arn:aws:sts::{ACCOUNT}:assumed-role/PassportPortal/passport-r{scene.request.pk}-u{scene.alice.pk}"
    )
    started = LogbookEntry.objects.get(action="session.started", request_id=scene.request.pk)
    assert started.detail["via"] == "cli"
    fleet_for(scene.prod).terminate_session(session.session_id, "us-east-1")


def test_scoped_credentials_cannot_open_another_instance_even_if_asked(scene: Scene) -> None:
    """What "a portal bug cannot reach another instance" rests on: AWS refuses the mismatched call."""
    fleet = fleet_for(scene.prod)
    assert scene.request.expires_at is not None
    scoped = fleet.assume_scoped(
        instances=[("us-east-1", scene.web.instance_id)],
        role_session_name="passport-test",
        not_after=scene.request.expires_at,
    )
    assert scoped.secret_access_key not in repr(scoped) and scoped.session_token not in repr(scoped)
    with pytest.raises(FleetError, match="AccessDeniedException"):
        fleet.start_session(scene.db.instance_id, "us-east-1", "AWS-StartSSHSession", credentials=scoped)
    with pytest.raises(FleetError, match="already ended"):
        fleet.assume_scoped(
            instances=[("us-east-1", scene.web.instance_id)],
            role_session_name="passport-test",
            not_after=timezone.now() - timedelta(seconds=1),
        )


def test_an_account_whose_sessions_are_recorded_issues_no_credentials(scene: Scene) -> None:
    """They would start AWS-StartSSHSession themselves and so bypass the recording proxy."""
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)
    response = _signed_in(scene.alice).post(f"/api/requests/{scene.request.pk}/credentials/")
    assert response.status_code == 409, response.content
    assert "recorded" in response.json()["detail"]
    refused = LogbookEntry.objects.filter(action="credentials.refused", request_id=scene.request.pk).get()
    assert refused.detail == {"reason": "recorded"}
    assert refused.actor_id == scene.alice.pk
    assert not LogbookEntry.objects.filter(action="credentials.issued").exists()
