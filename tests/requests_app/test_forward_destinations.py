"""Forwarding destinations beyond the instance (an RDS endpoint): a site admin lists them on the
account, a request records those in force when it is made, and approval covers exactly those.
(The proxy relaying them: tests/terminal/proxy/test_destinations.py; sshd: tests/sshca/test_login.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from core import dispatch
from requests_app import services
from requests_app.models import AccessRequest
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db

RDS = "mydb.abc123xyz.eu-west-1.rds.amazonaws.com:3306"
LATER = "reports.abc123xyz.eu-west-1.rds.amazonaws.com:5432"


def _admin_form(account: AwsAccount, destinations: str) -> dict[str, str]:
    return {
        "account_id": account.account_id,
        "name": account.name,
        "regions": '["us-east-1"]',
        "role_arn": account.role_arn,
        "extra_forward_ports": "",
        "forward_destinations": destinations,
        "cli_sessions": account.cli_sessions,
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "approval_policy-TOTAL_FORMS": "0",
        "approval_policy-INITIAL_FORMS": "0",
    }


def _site_admin() -> Client:
    client = Client()
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    return client


def _set(account: AwsAccount, destinations: list[str]) -> None:
    AwsAccount.objects.filter(pk=account.pk).update(forward_destinations=destinations)


def test_a_site_admin_lists_destinations_on_the_account_and_the_logbook_says_so(
    world: World, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[tuple[Any, ...]] = []

    class Recorded:
        def delay(self, *args: Any) -> None:
            sent.append(args)

    monkeypatch.setitem(dispatch._tasks, "bind_grant_keys", Recorded())
    url = f"/admin/accounts/awsaccount/{world.prod.pk}/change/"

    with django_capture_on_commit_callbacks(execute=True):
        saved = _site_admin().post(
            url, _admin_form(world.prod, f"{RDS.upper()}\n 10.0.12.7:5432, [FD00::5]:6379\n{RDS}")
        )

    assert saved.status_code == 302, saved.content.decode()[:3000]
    world.prod.refresh_from_db()
    assert world.prod.forward_destinations == [RDS, "10.0.12.7:5432", "[fd00::5]:6379"]
    # The live grants' authorized_keys lines are rewritten at once (bind_grant_keys), as for ports.
    assert sent == [()]
    change = LogbookEntry.objects.get(action="admin.changed", account_id=world.prod.account_id)
    assert change.detail["changes"]["forward_destinations"]["before"] == []
    assert change.detail["changes"]["forward_destinations"]["after"] == [RDS, "10.0.12.7:5432", "[fd00::5]:6379"]


@pytest.mark.parametrize(
    ("entered", "message"),
    [
        ('db:3306,permitopen="*:*"', "is not a port"),
        ('"db":3306', "is not a host name"),
        ("*:3306", "is not a host name"),
        ("*.rds.amazonaws.com:3306", "is not a host name"),
        ("[::1:3306", "is not [IPv6 address]:port"),
        ("db:0", "is not a port"),
        ("db:70000", "is not a port"),
        ("db", "is not host:port"),
        ("db:3306\x00", "plain characters"),
        ("instance-data.ec2.internal:80", "names an address EC2 keeps for the instance"),
        ("Instance-Data.:80", "names an address EC2 keeps for the instance"),
    ],
)
def test_the_admin_refuses_a_destination_that_is_not_host_port_with_a_clear_error(
    world: World, entered: str, message: str
) -> None:
    _set(world.prod, [RDS])
    page = _site_admin().post(f"/admin/accounts/awsaccount/{world.prod.pk}/change/", _admin_form(world.prod, entered))
    assert page.status_code == 200
    assert message in page.content.decode()
    world.prod.refresh_from_db()
    assert world.prod.forward_destinations == [RDS]  # nothing half-saved
    assert not LogbookEntry.objects.filter(action="admin.changed").exists()


def test_the_admin_refuses_more_than_32_destinations(world: World) -> None:
    many = "\n".join(f"db{number}.internal:5432" for number in range(33))
    page = _site_admin().post(f"/admin/accounts/awsaccount/{world.prod.pk}/change/", _admin_form(world.prod, many))
    assert page.status_code == 200 and "At most 32 destinations." in page.content.decode()


@pytest.mark.parametrize(
    "stored",
    ["db:1", ["DB:1"], ["db:1", "db:1"], ["[::1:22"], ['db:1,permitopen="*:*"'], ["db:01"], [3306], [None]],
)
def test_the_model_refuses_what_is_not_a_list_of_distinct_destinations(world: World, stored: Any) -> None:
    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.forward_destinations = stored
    with pytest.raises(ValidationError) as raised:
        account.full_clean()
    assert "forward_destinations" in raised.value.message_dict
    # Written past validation anyway: never taken for a destination.
    assert account.forward_destination_list == (("db:1",) if stored == ["db:1", "db:1"] else ())


def test_a_request_records_the_destinations_in_force_when_it_is_made_and_a_later_addition_never_widens_it(
    world: World,
) -> None:
    _set(world.prod, [RDS])
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Check the orders table"
    )
    created = LogbookEntry.objects.get(action="request.created", request_id=access_request.pk)
    assert created.detail["forward_destinations"] == [RDS]

    _set(world.prod, [RDS, LATER])  # after the request was made, before it is decided

    fresh = AccessRequest.objects.select_related("account").get(pk=access_request.pk)
    assert fresh.approved_destinations == (RDS,)
    assert fresh.destinations_in_force == (RDS,)
    services.access_request_approve(access_request=fresh, approver=world.approver)
    fresh = AccessRequest.objects.select_related("account").get(pk=access_request.pk)
    assert fresh.destinations_in_force == (RDS,)

    # What the approver and the requester see: exactly the recorded one.
    approver = Client()
    approver.force_login(world.approver)
    api = APIClient()
    api.force_authenticate(world.requester)
    body = api.get(f"/api/requests/{access_request.pk}/").json()
    assert body["forward_destinations"] == [RDS] and body["forward_destinations_in_force"] == [RDS]
    page = approver.get(f"/requests/{access_request.pk}/").content.decode()
    assert f'also reaches <span class="mono">{RDS}</span> through this instance' in page
    assert LATER not in page
    # A new request records what the account lists now.
    later = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.db], reason="Read the reports"
    )
    assert AccessRequest.objects.get(pk=later.pk).approved_destinations == (RDS, LATER)


def test_the_approval_queue_shows_what_each_request_reaches_beyond_its_instances(world: World) -> None:
    _set(world.prod, [RDS])
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web, world.db], reason="Check replication"
    )
    _set(world.prod, [RDS, LATER])
    approver = Client()
    approver.force_login(world.approver)
    queue = approver.get("/requests/approvals/").content.decode()
    row = queue[queue.index(f'data-request="{access_request.pk}"') :]
    row = row[: row.index("</tr>")]
    assert f'also reaches <span class="mono">{RDS}</span> through these instances' in row
    assert LATER not in row


def test_a_destination_taken_off_the_account_is_no_longer_reached_by_a_live_request(world: World) -> None:
    _set(world.prod, [RDS, LATER])
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Check the orders table"
    )
    _set(world.prod, [LATER])

    fresh = AccessRequest.objects.select_related("account").get(pk=access_request.pk)
    assert fresh.approved_destinations == (RDS, LATER)
    assert fresh.destinations_in_force == (LATER,)
    client = Client()
    client.force_login(world.requester)
    page = client.get(f"/requests/{access_request.pk}/").content.decode()
    assert "no longer: taken off the account" in page


def test_the_accounts_api_lists_the_destinations_a_request_would_record(world: World) -> None:
    _set(world.prod, [RDS])
    api = APIClient()
    api.force_authenticate(world.requester)
    rows = {row["account_id"]: row for row in api.get("/api/accounts/").json()}
    assert rows[world.prod.account_id]["forward_destinations"] == [RDS]
    assert rows[world.staging.account_id]["forward_destinations"] == []
