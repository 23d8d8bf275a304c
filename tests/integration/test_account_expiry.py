"""Each host's OS account expires at its request's end, and an extension moves it there: on the
real stack (PostgreSQL, Redis, a Celery worker, devcloud), whose Linux hosts run the scripts with
the real shadow tools and whose Windows hosts take the PowerShell as Systems Manager would.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest

from accounts.models import ApprovalPolicy, AwsAccount, User
from audit.models import LogbookEntry
from fleet.scripts import key_expiry_time, linux_expiry_date, windows_expiry_value
from fleet.windows_sid import valid_account_sid
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.factories import make_membership, make_user
from tests.stack import Cloud, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]


@pytest.fixture
def people(prod: AwsAccount) -> tuple[User, User]:
    requester, approver = make_user("alice"), make_user("bob")
    make_membership(requester, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    return requester, approver


def _active(prod: AwsAccount, people: tuple[User, User], name: str) -> AccessRequest:
    requester, approver = people
    instance = Instance.objects.get(account=prod, name=name)
    access_request = services.access_request_create(
        requester=requester, account=prod, instances=[instance], reason="Expiry on the host"
    )
    services.access_request_approve(access_request=access_request, approver=approver)

    def ready() -> bool:
        access_request.refresh_from_db()
        grant = access_request.grants.get()
        return access_request.status == RequestStatus.ACTIVE and grant.status == GrantStatus.READY

    wait_for(ready, timeout=60, what=f"the grant on {name} ready")
    return access_request


def _scripts(aws: Cloud, prod: AwsAccount, grant: Grant) -> list[str]:
    """Every script Run Command took for the grant's instance, oldest first."""
    commands = aws.devcloud.runtime.commands.commands(
        prod.account_id, grant.instance.region, instance_id=grant.instance.instance_id
    )
    return ["\n".join(command["Parameters"]["commands"]) for command in reversed(commands)]


def _in_step(grant_id: int, expires_at: datetime | None) -> bool:
    return Grant.objects.get(pk=grant_id).host_expires_at == expires_at


def test_a_windows_account_expires_at_the_requests_end_and_moves_with_an_extension(
    worker: object, prod: AwsAccount, aws: Cloud, people: tuple[User, User]
) -> None:
    access_request = _active(prod, people, "win-ad-1")
    grant = access_request.grants.select_related("instance").get()
    # Its script ran before the request's clock started: the host is told the end once it is known.
    wait_for(lambda: _in_step(grant.pk, access_request.expires_at), timeout=60, what="the end on the host")
    assert access_request.expires_at is not None
    assert f"ParseExact('{windows_expiry_value(access_request.expires_at)}', 'o'" in _scripts(aws, prod, grant)[-1]

    services.access_request_extend(access_request=access_request, actor=people[0], by=timedelta(hours=2))
    access_request.refresh_from_db()
    wait_for(lambda: _in_step(grant.pk, access_request.expires_at), timeout=60, what="the extension on the host")

    last = _scripts(aws, prod, grant)[-1]
    assert "Set-ADUser -Identity $account.SID.Value -AccountExpirationDate $expires" in last
    # Found by the SID its create reported (devcloud makes one up), as the removal finds it.
    grant.refresh_from_db()
    assert grant.account_sid is not None and valid_account_sid(grant.account_sid)
    assert f"$grantSid = '{grant.account_sid}'" in last.splitlines()
    assert f"ParseExact('{windows_expiry_value(access_request.expires_at)}', 'o'" in last
    assert "Get-SSMParameter" not in last  # the password stays what the person was shown
    moved = LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.expiry_moved").order_by("id")
    assert moved.count() == 2
    assert moved.last().detail["command_id"]  # type: ignore[union-attr]


def _shadow_expiry(aws: Cloud, username: str) -> date:
    entry = aws.run_in_host("web-1", ["getent", "shadow", username]).stdout
    days = int(entry.split(":")[7])
    return date(1970, 1, 1) + timedelta(days=days)


def test_a_linux_account_expires_the_day_after_the_requests_end(
    worker: object, prod: AwsAccount, aws: Cloud, people: tuple[User, User]
) -> None:
    access_request = _active(prod, people, "web-1")
    grant = access_request.grants.get()
    assert access_request.expires_at is not None
    assert _shadow_expiry(aws, grant.username) == linux_expiry_date(access_request.expires_at)

    # The most the request may reach: past the next UTC midnight whenever this runs after noon.
    services.access_request_extend(access_request=access_request, actor=people[0], by=timedelta(hours=11))
    access_request.refresh_from_db()
    wanted = linux_expiry_date(access_request.expires_at)
    wait_for(lambda: _shadow_expiry(aws, grant.username) == wanted, timeout=60, what="the new day on the host")


def _lines_expiry(aws: Cloud, username: str) -> set[str]:
    """The expiry-time of each line of the user's authorized_keys on web-1."""
    home = aws.run_in_host("web-1", ["getent", "passwd", username]).stdout.split(":")[5]
    text = aws.run_in_host("web-1", ["cat", f"{home}/.ssh/authorized_keys"]).stdout
    return {
        match or "none"
        for match in re.findall(r'^cert-authority,principals="[^"]+"(?:,expiry-time="([0-9]{12}Z)")?', text, re.M)
    }


def test_a_linux_grants_lines_stop_at_the_requests_end_and_move_back_with_a_policys_shortening(
    worker: object, prod: AwsAccount, aws: Cloud, people: tuple[User, User]
) -> None:
    access_request = _active(prod, people, "web-1")
    grant = access_request.grants.get()
    assert access_request.expires_at is not None and grant.key_expires_at is not None
    # Written before the clock started: the earliest end then, never after the end set since.
    assert grant.key_expires_at <= access_request.expires_at
    assert _lines_expiry(aws, grant.username) == {key_expiry_time(grant.key_expires_at)}

    policy, _ = ApprovalPolicy.objects.get_or_create(account=prod)
    policy.deny_over_duration = timedelta(minutes=30)
    policy.save()
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.ACTIVE
    assert access_request.expires_at is not None and access_request.activated_at is not None
    assert access_request.expires_at == access_request.activated_at + timedelta(minutes=30)
    wanted = {key_expiry_time(access_request.expires_at)}
    wait_for(lambda: _lines_expiry(aws, grant.username) == wanted, timeout=60, what="the new end on the host's lines")
