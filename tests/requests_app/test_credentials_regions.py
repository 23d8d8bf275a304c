"""A request's AWS credentials and sessions when its instances are in several regions, when a region is
taken off the account, and when the account's row names another AWS account than the request was made in.

Against devcloud, whose Session Manager is per region as AWS's is: a session started in a region other
than its instance's finds no such target (or is refused by the credentials' session policy).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from django.utils import timezone
from moto.sts.models import sts_backends
from rest_framework.test import APIClient

from accounts.models import AwsAccount, User
from audit.models import LogbookEntry
from fleet.aws.credentials import scoped_session_policy
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.factories import make_membership, make_user
from tests.stack import Cloud, account_admin_client, synced_account

ACCOUNT = "111111111111"
EU = "eu-west-1"
LINUX_IMAGE = "ami-760aaa0f"  # moto's Amazon Linux image, in every region


@dataclass
class TwoRegions:
    prod: AwsAccount
    alice: User
    web: Instance  # us-east-1
    eu_web: Instance  # eu-west-1
    request: AccessRequest  # both, active, both grants ready


def _activate(access_request: AccessRequest) -> AccessRequest:
    """Where provisioning leaves a request: active, its grants ready (provisioning is tested elsewhere)."""
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=2)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    access_request.refresh_from_db()
    return access_request


@pytest.fixture
def eu_instance(aws: Cloud) -> Iterator[str]:
    """An instance of devcloud's Acme Production in eu-west-1, launched by the account's administrator;
    terminated afterwards, so no other test's inventory of that region meets it."""
    ec2 = account_admin_client(aws, ACCOUNT, "ec2", region=EU)
    reservation = ec2.run_instances(
        ImageId=LINUX_IMAGE,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "eu-web-1"}]}],
    )
    instance_id = str(reservation["Instances"][0]["InstanceId"])
    yield instance_id
    ec2.terminate_instances(InstanceIds=[instance_id])


@pytest.fixture
def two_regions(aws: Cloud, db: None, settings: Any, eu_instance: str) -> TwoRegions:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PASSPORT_IAM_CHECK = True
    prod = synced_account(aws, "Acme Production")
    # AWS credentials open sessions of their own: only an account whose CLI sessions are direct issues them.
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT, regions=["us-east-1", EU])
    prod.refresh_from_db()
    assert not services.inventory_sync(account=prod).errors
    alice = make_user("alice")
    make_membership(alice, prod, "admin")
    web = Instance.objects.get(account=prod, name="web-1")
    eu_web = Instance.objects.get(account=prod, instance_id=eu_instance)
    assert eu_web.region == EU
    access_request = services.access_request_create(
        requester=alice, account=prod, instances=[web, eu_web], reason="compare the two regions' logs"
    )
    return TwoRegions(prod, alice, web, eu_web, _activate(access_request))


def _signed_in(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _ssm(aws: Cloud, body: dict[str, Any], region: str) -> Any:
    return boto3.client(
        "ssm",
        endpoint_url=aws.endpoint_url,
        region_name=region,
        aws_access_key_id=body["access_key_id"],
        aws_secret_access_key=body["secret_access_key"],
        aws_session_token=body["session_token"],
    )


def _take_eu_off(scene: TwoRegions) -> None:
    """The site admin leaves only us-east-1 on the account (as the admin's form saves it)."""
    account = AwsAccount.objects.get(pk=scene.prod.pk)
    account.regions = ["us-east-1"]
    account.save()


def _credentials_url(scene: TwoRegions) -> str:
    return f"/api/requests/{scene.request.pk}/credentials/"


def _session_url(scene: TwoRegions, instance: Instance) -> str:
    return f"/api/requests/{scene.request.pk}/grants/{instance.instance_id}/session/"


def _sessions_on(aws: Cloud, instance: Instance) -> list[Any]:
    """The open Session Manager sessions on ``instance``, as DescribeSessions in its region lists them."""
    listed = aws.devcloud.runtime.sessions.sessions(ACCOUNT, instance.region, active=True)
    return [session for session in listed if session["Target"] == instance.instance_id]


# --- one set of credentials, each instance's region -------------------------------------


def test_credentials_for_two_regions_name_each_instance_s_region_and_work_in_both(
    two_regions: TwoRegions, aws: Cloud
) -> None:
    scene = two_regions
    response = _signed_in(scene.alice).post(_credentials_url(scene))
    assert response.status_code == 201, response.content
    body = response.json()
    # No single region to name: each instance's own, which the AWS CLI needs (--region) to reach it.
    assert body["region"] is None
    assert body["regions"] == [EU, "us-east-1"]
    assert body["instances"] == sorted(
        [
            {"instance_id": scene.web.instance_id, "name": "web-1", "region": "us-east-1"},
            {"instance_id": scene.eu_web.instance_id, "name": "eu-web-1", "region": EU},
        ],
        key=lambda row: row["instance_id"],
    )
    assert body["withheld"] == []
    assumed = sts_backends[ACCOUNT]["aws"].get_assumed_role_from_access_key(body["access_key_id"])
    assert assumed is not None and scene.request.expires_at is not None
    assert assumed.policy == scoped_session_policy(
        account_id=ACCOUNT,
        instances=[("us-east-1", scene.web.instance_id), (EU, scene.eu_web.instance_id)],
        role_session_name=body["role_session_name"],
        not_after=scene.request.expires_at,
    )

    # The one set of credentials works in each instance's region, as the answer names it.
    for row in body["instances"]:
        ssm = _ssm(aws, body, row["region"])
        started = ssm.start_session(
            Target=row["instance_id"], DocumentName="AWS-StartSSHSession", Parameters={"portNumber": ["22"]}
        )
        ssm.terminate_session(SessionId=started["SessionId"])
    # In the other region the instance is not there: what `region` alone (the first) led to.
    with pytest.raises(ClientError):
        _ssm(aws, body, "us-east-1").start_session(Target=scene.eu_web.instance_id, DocumentName="AWS-StartSSHSession")


def test_credentials_of_one_region_still_name_it(two_regions: TwoRegions) -> None:
    scene = two_regions
    one = _activate(
        services.access_request_create(requester=scene.alice, account=scene.prod, instances=[scene.eu_web], reason="eu")
    )
    body = _signed_in(scene.alice).post(f"/api/requests/{one.pk}/credentials/").json()
    assert (body["region"], body["regions"]) == (EU, [EU])


# --- a region taken off the account -------------------------------------------------------


def test_a_session_to_an_instance_of_a_region_taken_off_is_refused_on_record(
    two_regions: TwoRegions, aws: Cloud
) -> None:
    scene = two_regions
    _take_eu_off(scene)
    refused = _signed_in(scene.alice).post(
        _session_url(scene, scene.eu_web), {"document": "AWS-StartSSHSession"}, format="json"
    )
    assert refused.status_code == 409, refused.content
    assert refused.json()["detail"] == (
        f"{scene.eu_web.instance_id} (eu-web-1) is in eu-west-1, a region Passport no longer manages in "
        "Acme Production: no session is started there."
    )
    assert not _sessions_on(aws, scene.eu_web)
    entry = LogbookEntry.objects.get(action="session.refused", request_id=scene.request.pk)
    assert entry.actor_id == scene.alice.pk and entry.instance_ids.split() == [scene.eu_web.instance_id]
    assert entry.detail == {
        "reason": "region",
        "region": EU,
        "document": "AWS-StartSSHSession",
        "port": 22,
        "via": "cli",
    }
    assert not LogbookEntry.objects.filter(action__in=["session.started", "session.start_failed"]).exists()

    # The instance of the region still managed is reached as before.
    started = _signed_in(scene.alice).post(
        _session_url(scene, scene.web), {"document": "AWS-StartSSHSession"}, format="json"
    )
    assert started.status_code == 201, started.content
    account_admin_client(aws, ACCOUNT, "ssm").terminate_session(SessionId=started.json()["session_id"])


def test_credentials_leave_out_the_instances_of_a_region_taken_off(two_regions: TwoRegions, aws: Cloud) -> None:
    scene = two_regions
    _take_eu_off(scene)
    response = _signed_in(scene.alice).post(_credentials_url(scene))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["region"], body["regions"]) == ("us-east-1", ["us-east-1"])
    assert body["instances"] == [{"instance_id": scene.web.instance_id, "name": "web-1", "region": "us-east-1"}]
    reason = (
        f"{scene.eu_web.instance_id} (eu-web-1) is in eu-west-1, a region Passport no longer manages in "
        "Acme Production."
    )
    assert body["withheld"] == [
        {"instance_id": scene.eu_web.instance_id, "name": "eu-web-1", "region": EU, "reason": reason}
    ]
    # AWS itself refuses them there: the policy names only the instance still managed.
    assumed = sts_backends[ACCOUNT]["aws"].get_assumed_role_from_access_key(body["access_key_id"])
    assert assumed is not None
    assert scene.eu_web.instance_id not in assumed.policy and EU not in assumed.policy
    with pytest.raises(ClientError) as denied:
        _ssm(aws, body, EU).start_session(Target=scene.eu_web.instance_id, DocumentName="AWS-StartSSHSession")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    issued = LogbookEntry.objects.get(action="credentials.issued", request_id=scene.request.pk)
    assert issued.instance_ids.split() == [scene.web.instance_id]
    assert issued.detail["withheld"] == {scene.eu_web.instance_id: {"reason": "region", "region": EU}}


def test_credentials_for_instances_all_in_a_region_taken_off_are_refused_on_record(two_regions: TwoRegions) -> None:
    scene = two_regions
    only_eu = _activate(
        services.access_request_create(requester=scene.alice, account=scene.prod, instances=[scene.eu_web], reason="eu")
    )
    _take_eu_off(scene)
    refused = _signed_in(scene.alice).post(f"/api/requests/{only_eu.pk}/credentials/")
    assert refused.status_code == 409, refused.content
    assert refused.json()["detail"] == (
        f"{scene.eu_web.instance_id} (eu-web-1) is in eu-west-1, a region Passport no longer manages in "
        "Acme Production: no AWS credentials are issued for it."
    )
    entry = LogbookEntry.objects.get(action="credentials.refused", request_id=only_eu.pk)
    assert entry.actor_id == scene.alice.pk and entry.instance_ids.split() == [scene.eu_web.instance_id]
    assert entry.detail == {"reason": "region", "regions": {scene.eu_web.instance_id: EU}}
    assert not LogbookEntry.objects.filter(action="credentials.issued").exists()


# --- the account's row names another AWS account ------------------------------------------


def test_sessions_and_credentials_are_refused_when_the_account_names_another_aws_account(
    two_regions: TwoRegions, aws: Cloud
) -> None:
    """``AwsAccount.save`` refuses that change; a queryset's update() (or SQL) does not ask."""
    scene = two_regions
    AwsAccount.objects.filter(pk=scene.prod.pk).update(account_id="333333333333")
    message = (
        f"Request {scene.request.pk} was made in AWS account 111111111111, but its account now names "
        "333333333333: nothing was sent. Put the account's id and role back."
    )
    session = _signed_in(scene.alice).post(
        _session_url(scene, scene.web), {"document": "AWS-StartSSHSession"}, format="json"
    )
    assert session.status_code == 409, session.content
    assert session.json()["detail"] == message
    assert not _sessions_on(aws, scene.web)
    refused = LogbookEntry.objects.get(action="session.refused", request_id=scene.request.pk)
    assert refused.detail == {
        "reason": "account changed",
        "made_in": ACCOUNT,
        "account_id": "333333333333",
        "document": "AWS-StartSSHSession",
        "port": 22,
        "via": "cli",
    }

    credentials = _signed_in(scene.alice).post(_credentials_url(scene))
    assert credentials.status_code == 409, credentials.content
    assert credentials.json()["detail"] == message
    entry = LogbookEntry.objects.get(action="credentials.refused", request_id=scene.request.pk)
    assert entry.detail == {"reason": "account changed", "made_in": ACCOUNT, "account_id": "333333333333"}
    assert not LogbookEntry.objects.filter(
        action__in=["session.started", "session.start_failed", "credentials.issued", "iam.checked"],
        request_id=scene.request.pk,
    ).exists()
