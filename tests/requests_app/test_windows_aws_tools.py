"""A Windows instance without AWS Tools for PowerShell: its create script cannot read the password
hand-off (Get-SSMParameter) and stops for good (exit 7) after the approval. The grant's error, on
the request page, says plainly what to install."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from fleet import CommandResult
from requests_app import services
from requests_app.models import Grant, GrantStatus
from requests_app.services.provisioning import Outcome
from tests.conftest import World
from tests.fakes.fleet import FakeFleet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]


def _host_without_aws_tools(*, script: str, **_: Any) -> CommandResult:
    """A Windows host without the module: the script's own check refuses, with its own words."""
    check = re.search(r"^if \(-not \(Get-Command Get-SSMParameter [^\n]*\n  Refuse (\d+) \"([^\"\n]+)\"", script, re.M)
    assert check, "the create script never checks for AWS Tools for PowerShell"
    code, message = int(check.group(1)), check.group(2)
    return CommandResult(command_id="cmd-create", status="Failed", exit_code=code, stdout="", stderr=message + "\r\n")


def test_a_windows_host_without_aws_tools_fails_for_good_saying_what_to_install(
    client: Any, world: World, fleet: FakeFleet, django_capture_on_commit_callbacks: Any
) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.windows], reason="patch"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    fleet.will(_host_without_aws_tools)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.grant_provision(grant_id=grant_id) == Outcome()  # not retried

    grant = Grant.objects.get(pk=grant_id)
    assert grant.attempts == 1 and grant.status in (GrantStatus.FAILED, GrantStatus.REMOVING)
    assert "(exit 7)" in grant.last_error
    client.force_login(world.requester)
    page = " ".join(client.get(reverse("requests:detail", args=[access_request.pk])).content.decode().split())
    assert "AWS Tools for PowerShell is not installed on this instance" in page
    assert "Install the AWS.Tools.SimpleSystemsManagement module" in page
    assert "Install-Module AWS.Tools.SimpleSystemsManagement" in page
