"""The terminal page: the requester of an active, ready Linux grant gets xterm.js and a ticket;
everyone else a 404 or a page that says why."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Membership
from requests_app.models import AccessRequest, Grant, Instance, RequestStatus
from terminal.models import TerminalTicket
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db


def page(client: Client, grant: Grant) -> tuple[int, str]:
    response = client.get(reverse("terminal:page", args=[grant.pk]))
    return response.status_code, response.content.decode()


def test_requester_gets_the_terminal_and_one_ticket(world: World, client: Client) -> None:
    grant = make_active_grant(world)
    client.force_login(world.requester)
    status, body = page(client, grant)
    assert status == 200
    assert "vendor/xterm/lib/xterm.js" in body and f"/ws/terminal/{grant.pk}/" in body
    assert TerminalTicket.objects.filter(user=world.requester, grant=grant).count() == 1


def test_login_required(world: World, client: Client) -> None:
    grant = make_active_grant(world)
    response = client.get(reverse("terminal:page", args=[grant.pk]))
    assert response.status_code == 302


def test_outsider_gets_404(world: World, client: Client) -> None:
    grant = make_active_grant(world)
    client.force_login(world.outsider)
    assert page(client, grant)[0] == 404
    assert client.get(reverse("terminal:page", args=[999999])).status_code == 404


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("inactive", "not active"),
        ("offline", "instance is offline"),
        ("old_agent", "Passport needs"),
        ("windows", "Linux instances"),
    ],
)
def test_unavailable_says_why(world: World, client: Client, change: str, expected: str) -> None:
    grant = make_active_grant(world)
    if change == "inactive":
        AccessRequest.objects.filter(pk=grant.request_id).update(status=RequestStatus.COMPLETED)
    elif change == "offline":
        Instance.objects.filter(pk=grant.instance_id).update(ping_status="ConnectionLost")
    elif change == "old_agent":
        Instance.objects.filter(pk=grant.instance_id).update(agent_version="2.3.100.0")
    else:  # a Windows grant: its user was made as the grant recorded, whatever the inventory says now
        Grant.objects.filter(pk=grant.pk).update(platform=Instance.Platform.WINDOWS)
    client.force_login(world.requester)
    status, body = page(client, grant)
    assert status == 409
    assert expected in body
    assert not TerminalTicket.objects.exists()


def test_other_viewer_is_told_only_the_requester_may(world: World, client: Client) -> None:
    grant = make_active_grant(world)
    client.force_login(world.approver)
    status, body = page(client, grant)
    assert status in (404, 409)
    if status == 409:
        assert "Only the person who asked" in body
    assert not TerminalTicket.objects.exists()


@pytest.mark.parametrize(
    ("change", "held"),
    [("observer", "the Observer role"), ("none", "no role"), ("removed", "no role")],
)
def test_a_requester_who_is_no_longer_admin_is_told_so_and_gets_no_ticket(
    world: World, client: Client, change: str, held: str
) -> None:
    """The role is asked at each use: one lowered or removed since the request was made takes the terminal away."""
    grant = make_active_grant(world)
    memberships = Membership.objects.filter(user=world.requester, account=world.prod)
    if change == "removed":
        memberships.delete()
    else:
        memberships.update(role=change)
    client.force_login(world.requester)
    status, body = page(client, grant)
    assert status == 409
    assert f"You have {held} on Acme Production (111111111111) now" in body
    assert not TerminalTicket.objects.exists()
