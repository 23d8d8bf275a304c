"""The HTML pages: scoping, forms with per-field errors, actions, and pinned query counts."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import unquote

import pytest
from django.urls import reverse

from accounts.models import User
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.conftest import World
from tests.factories import make_instance, make_membership, make_user

pytestmark = pytest.mark.django_db


def _request(world: World, **overrides: object) -> AccessRequest:
    fields: dict = {
        "requester": world.requester,
        "account": world.prod,
        "instances": [world.web, world.db],
        "reason": "CPU alarm on the database",
        "ticket": "INC-1",
    }
    fields.update(overrides)
    return services.access_request_create(**fields)


def test_anonymous_is_sent_to_sign_in(client, world: World) -> None:
    response = client.get(reverse("requests:list"))
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


def test_sign_in_page_renders_and_local_login_works(client, world: World) -> None:
    assert client.get(reverse("account_login")).status_code == 200
    response = client.post(reverse("account_login"), {"login": "alice", "password": "pw-alice"})
    assert response.status_code == 302
    assert client.get(reverse("requests:list")).status_code == 200


def test_create_form_submits_a_request(client, world: World) -> None:
    client.force_login(world.requester)
    response = client.post(
        reverse("requests:create"),
        {
            "account": world.prod.pk,
            "instances": [world.web.pk, world.db.pk],
            "duration": 120,
            "reason": "Rotate the logs",
            "ticket": "CHG-7",
        },
    )
    access_request = AccessRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("requests:detail", args=[access_request.pk])
    assert access_request.duration == timedelta(hours=2)
    assert sorted(access_request.grants.values_list("instance__name", flat=True)) == ["db-1", "web-1"]
    assert not access_request.admin_rights


def test_create_form_asks_for_administrator_rights(client, world: World) -> None:
    client.force_login(world.requester)
    page = client.get(reverse("requests:create")).content.decode()
    assert "Administrator rights" in page and "Remote Desktop Users only" in page
    client.post(
        reverse("requests:create"),
        {
            "account": world.prod.pk,
            "instances": [world.windows.pk],
            "duration": 60,
            "reason": "Patch",
            "ticket": "CHG-7",
            "admin_rights": "on",
        },
    )
    assert AccessRequest.objects.get().admin_rights


def test_create_form_shows_the_rule_that_failed_beside_its_field(client, world: World) -> None:
    client.force_login(world.requester)
    response = client.post(
        reverse("requests:create"),
        {"account": world.prod.pk, "instances": [world.legacy.pk], "duration": 60, "reason": "x" * 10},
    )
    assert response.status_code == 200
    assert world.legacy.instance_id in response.content.decode()
    assert "2.3.672.0" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_create_form_requires_a_reason(client, world: World) -> None:
    client.force_login(world.requester)
    response = client.post(
        reverse("requests:create"), {"account": world.prod.pk, "instances": [world.web.pk], "duration": 60}
    )
    assert "Say why you need access." in response.content.decode()


def test_the_ticket_is_required_of_a_support_engineer_on_the_form(client, world: World) -> None:
    """A support engineer is refused without a ticket: the form says "(required)" and why, and a
    blank ticket is the field's own error, beside the others (not only once everything else is right)."""
    sam = make_user("sam", identity_store=User.IdentityStore.INTERNAL)
    make_membership(sam, world.prod, "admin")
    client.force_login(sam)
    page = client.get(reverse("requests:create")).content.decode()
    label = re.search(r'<label for="id_ticket">(.*?)</label>', page, re.S)
    assert label and "(required)" in label.group(1) and "optional" not in label.group(1)
    assert 'id="ticket-help"' in page
    assert re.search(r'<input[^>]*name="ticket"[^>]*\brequired\b', page)
    response = client.post(
        reverse("requests:create"), {"account": world.prod.pk, "instances": [], "duration": 60, "ticket": "  "}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Support engineers must name the customer&#x27;s ticket this access is for." in body
    assert "Choose at least one instance." in body  # reported together, not one after the other
    assert not AccessRequest.objects.exists()


def test_the_ticket_stays_optional_for_everyone_else(client, world: World) -> None:
    client.force_login(world.requester)
    page = client.get(reverse("requests:create")).content.decode()
    assert "(optional)" in page and 'id="ticket-help"' not in page
    payload = {"account": world.prod.pk, "instances": [world.web.pk], "duration": 60, "reason": "Patch"}
    assert client.post(reverse("requests:create"), payload).status_code == 302


def test_create_form_refuses_more_instances_than_one_request_may_have(client, world: World) -> None:
    many = [make_instance(world.prod, f"fleet-{n}") for n in range(services.INSTANCES_MAX + 1)]
    client.force_login(world.requester)
    payload = {"account": world.prod.pk, "instances": [i.pk for i in many], "duration": 60, "reason": "Patch"}
    response = client.post(reverse("requests:create"), payload)
    assert response.status_code == 200
    assert f"Choose at most {services.INSTANCES_MAX} instances" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_observer_cannot_pick_the_account(client, world: World) -> None:
    client.force_login(world.observer)
    response = client.get(reverse("requests:create"))
    assert "You do not have the Admin role" in response.content.decode()
    response = client.post(
        reverse("requests:create"),
        {"account": world.prod.pk, "instances": [world.web.pk], "duration": 60, "reason": "x"},
    )
    assert response.status_code == 200
    assert not AccessRequest.objects.exists()


def test_instance_picker_searches_within_a_requestable_account(client, world: World) -> None:
    client.force_login(world.requester)
    response = client.get(reverse("requests:instance_picker"), {"account": world.prod.pk, "q": "web"})
    body = response.content.decode()
    assert world.web.instance_id in body
    assert world.db.instance_id not in body
    client.force_login(world.observer)
    assert client.get(reverse("requests:instance_picker"), {"account": world.prod.pk}).status_code == 404


def test_detail_is_404_for_someone_else(client, world: World) -> None:
    access_request = _request(world)
    client.force_login(world.outsider)
    assert client.get(reverse("requests:detail", args=[access_request.pk])).status_code == 404
    client.force_login(world.member)
    assert client.get(reverse("requests:detail", args=[access_request.pk])).status_code == 404
    client.force_login(world.approver)
    assert client.get(reverse("requests:detail", args=[access_request.pk])).status_code == 200


def test_detail_polls_while_provisioning_and_not_once_settled(client, world: World) -> None:
    access_request = _request(world)
    client.force_login(world.requester)
    url = reverse("requests:detail", args=[access_request.pk])
    assert 'hx-trigger="every 5s"' in client.get(url).content.decode()
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.PROVISIONING)
    assert 'hx-trigger="every 2s"' in client.get(url).content.decode()
    fragment = client.get(url, {"fragment": "status", "seen": "provisioning"}, HTTP_HX_REQUEST="true")
    assert fragment.content.decode().lstrip().startswith('<div id="status"')
    # Once the status moves on, the page reloads itself so its buttons match.
    moved = client.get(url, {"fragment": "status", "seen": "pending"}, HTTP_HX_REQUEST="true")
    assert moved.status_code == 204 and moved["HX-Refresh"] == "true"
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.COMPLETED)
    assert "hx-trigger" not in client.get(url).content.decode()


def test_an_active_page_shows_a_grant_that_became_ready_after_it_loaded(client, world: World) -> None:
    """The page loaded as Active with one grant still provisioning: its poll must bring the other grant's
    Ready, not answer "nothing moved" because the request's own status stayed Active."""
    access_request = _request(world)
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.ACTIVE)
    first, second = access_request.grants.order_by("pk")
    Grant.objects.filter(pk=first.pk).update(status=GrantStatus.READY)
    Grant.objects.filter(pk=second.pk).update(status=GrantStatus.PROVISIONING)
    client.force_login(world.requester)
    url = reverse("requests:detail", args=[access_request.pk])
    page = client.get(url).content.decode()
    seen = re.search(r"seen=([^\"&]+)", page)
    assert seen is not None
    Grant.objects.filter(pk=second.pk).update(status=GrantStatus.READY)
    poll = client.get(url, {"fragment": "status", "seen": unquote(seen.group(1))}, HTTP_HX_REQUEST="true")
    assert poll.status_code == 200
    assert poll.content.decode().count("Ready") >= 2
    # Once everything settled and the page saw it, the poll keeps the page as it is.
    settled = re.search(r"seen=([^\"&]+)", poll.content.decode())
    assert settled is not None
    again = client.get(url, {"fragment": "status", "seen": unquote(settled.group(1))}, HTTP_HX_REQUEST="true")
    assert again.status_code == 204 and "HX-Refresh" not in again


def test_approver_approves_from_the_page_and_requester_cannot(client, world: World) -> None:
    access_request = _request(world)
    client.force_login(world.requester)
    client.post(reverse("requests:action", args=[access_request.pk, "approve"]))
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    assert LogbookEntry.objects.filter(action="request.approve_denied").exists()
    client.force_login(world.approver)
    response = client.post(reverse("requests:action", args=[access_request.pk, "approve"]), {"note": "ok"})
    assert response.status_code == 302
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED
    assert access_request.decided_by == world.approver


def test_outsider_cannot_act_on_a_request_they_cannot_see(client, world: World) -> None:
    access_request = _request(world)
    client.force_login(world.outsider)
    assert client.post(reverse("requests:action", args=[access_request.pk, "cancel"])).status_code == 404
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING


def test_requester_cancels_a_pending_request(client, world: World) -> None:
    access_request = _request(world)
    client.force_login(world.requester)
    client.post(reverse("requests:action", args=[access_request.pk, "cancel"]))
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.CANCELLED


def test_approval_queue_lists_others_pending_requests_only(client, world: World) -> None:
    theirs = _request(world)
    client.force_login(world.approver)
    body = client.get(reverse("requests:approvals")).content.decode()
    assert f"#{theirs.pk}" in body
    client.force_login(world.requester)
    assert client.get(reverse("requests:approvals")).status_code == 403


def _admin_rights_cells(body: str) -> list[str]:
    """The text of each "Administrator rights" cell on a page, tags dropped."""
    cells = re.findall(r'data-testid="admin-rights">(.*?)</(?:td|dd)>', body, flags=re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells]


def test_the_approver_sees_whether_a_request_asks_for_administrator_rights(client, world: World) -> None:
    windows_admin = make_user("wanda")
    make_membership(windows_admin, world.prod, "admin")
    admin_request = _request(world, requester=windows_admin, instances=[world.windows], admin_rights=True)
    plain_request = _request(world, instances=[world.web, world.windows])
    client.force_login(world.approver)

    queue = client.get(reverse("requests:approvals")).content.decode()
    assert "<th>Administrator rights</th>" in queue
    assert _admin_rights_cells(queue) == [
        "Administrator rights Windows: Administrators",
        "No Linux: no sudo; Windows: Remote Desktop Users only",
    ]

    detail = client.get(reverse("requests:detail", args=[admin_request.pk])).content.decode()
    assert "<dt>Administrator rights</dt>" in detail
    assert _admin_rights_cells(detail) == ["Administrator rights (Windows: Administrators)"]
    detail = client.get(reverse("requests:detail", args=[plain_request.pk])).content.decode()
    assert _admin_rights_cells(detail) == ["No (Linux: no sudo; Windows: Remote Desktop Users only)"]


def test_a_domain_controller_request_says_what_admin_rights_mean_there(client, world: World) -> None:
    dc = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    access_request = _request(world, instances=[dc], admin_rights=True)
    client.force_login(world.approver)
    detail = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    assert _admin_rights_cells(detail) == ["Administrator rights (domain controller: Domain Admins)"]


def test_request_list_query_count_does_not_grow_with_requests(
    client, world: World, django_assert_max_num_queries
) -> None:
    for n in range(12):
        done = _request(world, reason=f"reason {n}")
        AccessRequest.objects.filter(pk=done.pk).update(status=RequestStatus.COMPLETED)
    client.force_login(world.requester)
    with django_assert_max_num_queries(8):
        response = client.get(reverse("requests:list"))
    assert response.content.decode().count('data-status="completed"') == 12


def test_approval_queue_query_count_is_pinned(client, world: World, django_assert_max_num_queries) -> None:
    for n in range(10):
        requester = make_user(f"requester{n}")
        make_membership(requester, world.prod, "admin")
        _request(world, requester=requester, reason=f"reason {n}")
    client.force_login(world.approver)
    with django_assert_max_num_queries(9):
        client.get(reverse("requests:approvals"))


def test_inventory_page_for_approvers_only(client, world: World) -> None:
    client.force_login(world.approver)
    body = client.get(reverse("requests:inventory")).content.decode()
    assert world.web.instance_id in body
    assert "Sync now" in body
    client.force_login(world.requester)
    assert client.get(reverse("requests:inventory")).status_code == 403
    assert client.post(reverse("requests:inventory_sync", args=[world.prod.pk])).status_code == 404
