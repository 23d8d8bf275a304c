"""`passport aws-credentials` against a live portal and devcloud: the output is what AWS tools read."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from django.utils import timezone

from accounts.models import AwsAccount
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.cli.conftest import Cli
from tests.factories import make_membership, make_user
from tests.stack import Cloud

pytestmark = pytest.mark.usefixtures("live_db")


def _active(prod: AwsAccount, requester: Any, instance: Instance) -> AccessRequest:
    """Active with its grant ready, as provisioning leaves it (provisioning is tested in tests/integration)."""
    access_request = services.access_request_create(
        requester=requester, account=prod, instances=[instance], reason="aws cli access"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    access_request.refresh_from_db()
    return access_request


def test_credential_process_output_is_used_by_botocore(
    prod: AwsAccount, aws: Cloud, cli: Cli, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PASSPORT_IAM_CHECK = True
    alice = make_user("alice")
    make_membership(alice, prod, "admin")
    web = Instance.objects.get(account=prod, name="web-1")
    db = Instance.objects.get(account=prod, name="db-1")
    assert cli.run("aws-credentials", "1").returncode == 3  # not signed in
    assert cli.login(alice).returncode == 0
    assert cli.run("aws-credentials").returncode == 4  # no active request
    access_request = _active(prod, alice, web)
    # Recorded CLI sessions (the default): credentials would bypass the recording proxy.
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)
    refused = cli.run("aws-credentials", str(access_request.pk))
    assert refused.returncode == 5, refused.stderr
    assert "recorded" in refused.stderr and not refused.stdout
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)

    result = cli.run("aws-credentials", str(access_request.pk), check=True)
    process = json.loads(result.stdout)
    assert set(process) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert process["Version"] == 1
    assert access_request.expires_at is not None
    assert datetime.fromisoformat(process["Expiration"]) <= access_request.expires_at
    # Never written down on this side either.
    for path in cli.config_dir.rglob("*"):
        if path.is_file():
            assert process["SecretAccessKey"] not in path.read_text(errors="replace")

    # The AWS SDK runs the command itself, as `credential_process` in ~/.aws/config, and gets working credentials.
    config = tmp_path / "aws-config"
    command = f"{shlex.quote(sys.executable)} -m passport_cli aws-credentials {access_request.pk}"
    config.write_text(f"[profile passport]\ncredential_process = {command}\nregion = us-east-1\n")
    for name, value in cli.env.items():
        if name in ("XDG_CONFIG_HOME", "PASSPORT_URL"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    session = boto3.Session(profile_name="passport")
    ssm = session.client("ssm", endpoint_url=aws.endpoint_url)
    started = ssm.start_session(Target=web.instance_id, DocumentName="AWS-StartSSHSession")
    ssm.terminate_session(SessionId=started["SessionId"])
    with pytest.raises(ClientError) as refused:
        ssm.start_session(Target=db.instance_id, DocumentName="AWS-StartSSHSession")
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"

    # Shell exports, and the only active request when none is named.
    exports = cli.run("aws-credentials", "--format", "env", check=True).stdout
    assert "export AWS_ACCESS_KEY_ID=" in exports and "export AWS_SESSION_TOKEN=" in exports
    assert "export AWS_REGION=us-east-1" in exports
    everything = json.loads(cli.run("aws-credentials", "--format", "json", check=True).stdout)
    assert everything["credential_process"]["Version"] == 1 and everything["region"] == "us-east-1"

    # Refusals come back as exit codes: someone else's request is not found, an ended one is refused.
    bob = make_user("bob")
    make_membership(bob, prod, "admin")
    others = _active(prod, bob, db)
    assert cli.run("aws-credentials", str(others.pk)).returncode == 4
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.COMPLETED)
    ended = cli.run("aws-credentials", str(access_request.pk))
    assert ended.returncode == 5 and "active" in ended.stderr and ended.stdout == ""
