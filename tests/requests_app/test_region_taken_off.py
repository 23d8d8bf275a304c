"""A region a site admin takes off an account: its instances can no longer be asked for or connected
to, while the grants already live there are still removed, reconciled and their sessions ended.

The inventory visits only the account's regions, so it never marks those instances gone: what it
last said of them (Online, the agent's version) would have let them be asked for indefinitely.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import CommandResult
from fleet.interface import InstanceRecord
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance
from terminal.services import terminal_unavailable_reason
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.conftest import World
from tests.factories import make_active_request
from tests.fakes.fleet import FakeFleet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]


def _take_us_east_1_off(world: World, fleet: FakeFleet) -> None:
    """The site admin leaves only eu-west-1 on prod, and the inventory syncs what that leaves."""
    client, _ = superuser_client()
    url = f"/admin/accounts/awsaccount/{world.prod.pk}/change/"
    post_ok(client, url, form_data(client, url, regions='["eu-west-1"]'))
    fleet.holds(
        [
            InstanceRecord(
                instance_id="i-0e0000000000000e1",
                region="eu-west-1",
                name="eu-1",
                state="running",
                ssm_managed=True,
                ping_status="Online",
                agent_version="3.3.1142.0",
            )
        ]
    )
    services.inventory_sync(account=AwsAccount.objects.get(pk=world.prod.pk))


def _region_refusal(world: World) -> str:
    return f"{world.web.instance_id} (web-1) is in us-east-1, a region Passport no longer manages in Acme Production."


def test_an_instance_of_a_region_taken_off_is_refused_with_the_reason(world: World, fleet: FakeFleet) -> None:
    _take_us_east_1_off(world, fleet)
    world.web.refresh_from_db()
    assert world.web.gone_at is None and world.web.ping_status == "Online"  # as the inventory last saw it

    with pytest.raises(RequestRuleError) as refused:
        services.access_request_create(
            requester=world.requester,
            account=AwsAccount.objects.get(pk=world.prod.pk),
            instances=[world.web],
            reason="patch",
        )

    assert refused.value.errors == {"instances": [_region_refusal(world)]}
    assert not AccessRequest.objects.exists()
    denied = LogbookEntry.objects.get(action="request.create_denied")
    assert denied.detail["denied"] == {"instances": [_region_refusal(world)]}


def test_the_pickers_and_the_api_leave_out_the_instances_of_a_region_taken_off(
    world: World, fleet: FakeFleet, client: Any
) -> None:
    _take_us_east_1_off(world, fleet)

    api = APIClient()
    api.force_authenticate(world.requester)
    listed = api.get("/api/accounts/111111111111/instances/").json()["results"]
    assert [(row["name"], row["available"]) for row in listed] == [("eu-1", True)]
    created = api.post(
        "/api/requests/",
        {"account": "111111111111", "instances": [world.web.instance_id], "reason": "patch"},
        format="json",
    )
    assert created.status_code == 400 and created.json() == {"instances": [_region_refusal(world)]}

    client.force_login(world.requester)
    picker = client.get(reverse("requests:instance_picker"), {"account": world.prod.pk}).content.decode()
    assert "eu-1" in picker and "web-1" not in picker and "db-1" not in picker
    form = client.post(
        reverse("requests:create"),
        {"account": world.prod.pk, "instances": [world.web.pk], "duration": 60, "reason": "patch"},
    )
    assert form.status_code == 200 and not AccessRequest.objects.exists()
    # An instance of a region still listed is asked for as before.
    eu = Instance.objects.get(instance_id="i-0e0000000000000e1")
    post = {"account": world.prod.pk, "instances": [eu.pk], "duration": 60, "reason": "patch"}
    assert client.post(reverse("requests:create"), post).status_code == 302
    assert list(AccessRequest.objects.get().grants.values_list("instance__name", flat=True)) == ["eu-1"]


def test_a_grant_live_there_is_still_removed_reconciled_and_its_sessions_ended(
    world: World, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request = make_active_request(world.requester, world.prod, world.web)
    (grant,) = access_request.grants.all()
    _take_us_east_1_off(world, fleet)

    # No new session: a terminal is refused, as a new request is.
    grant = Grant.objects.select_related("request__account", "instance__account").get(pk=grant.pk)
    assert terminal_unavailable_reason(grant=grant, user=world.requester) == _region_refusal(world)

    # Her sessions are still found and ended, in the instance's region.
    owner = f"arn:aws:sts::111111111111:assumed-role/PassportPortal/passport-r{access_request.pk}-u{world.requester.pk}"
    terminated: list[tuple[str, str]] = []
    monkeypatch.setattr(
        fleet, "active_sessions", lambda instance_id, region: [{"SessionId": "passport-s1", "Owner": owner}]
    )
    monkeypatch.setattr(
        fleet, "terminate_session", lambda session_id, region: terminated.append((session_id, region)), raising=False
    )
    services.access_request_complete(access_request=access_request, actor=world.requester)
    Grant.objects.filter(pk=grant.pk, status=GrantStatus.READY).update(status=GrantStatus.REMOVING)
    services.grant_deprovision(grant_id=grant.pk)

    assert terminated == [("passport-s1", "us-east-1")]
    assert [(call["instance_id"], call["region"]) for call in fleet.calls] == [(world.web.instance_id, "us-east-1")]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REMOVED
    removed = LogbookEntry.objects.get(action="grant.removed", request_id=access_request.pk)
    assert "instance_gone" not in removed.detail
    ended = LogbookEntry.objects.get(action="session.ended_with_access", request_id=access_request.pk)
    assert ended.detail["session_ids"] == ["passport-s1"]

    # A user no grant accounts for on a host of that region is still found and removed.
    listings = {
        instance_id: _listing("passport-listed 0\n")
        for instance_id in Instance.objects.values_list("instance_id", flat=True)
    }
    listings[world.web.instance_id] = _listing("rs-abcdefgh\npassport-listed 1\n")
    fleet.will_batch(listings, listings)  # a Run Command per region
    result = services.reconcile_account(account=AwsAccount.objects.get(pk=world.prod.pk))
    assert result.orphans_removed == [f"rs-abcdefgh@{world.web.instance_id}"] and not result.errors
    assert (fleet.calls[-1]["instance_id"], fleet.calls[-1]["region"]) == (world.web.instance_id, "us-east-1")


def _listing(stdout: str) -> CommandResult:
    return CommandResult(command_id="c-list", status="Success", exit_code=0, stdout=stdout, stderr="")
