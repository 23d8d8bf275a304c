"""The approvals queue that updates itself, the nav's count of what waits, and the extend control."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApprovalPolicy
from requests_app import selectors, services
from requests_app.forms import ExtendForm
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from tests.factories import make_membership, make_user

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _request(world: World, **overrides: object) -> AccessRequest:
    fields: dict = {
        "requester": world.requester,
        "account": world.prod,
        "instances": [world.web],
        "reason": "CPU alarm",
    }
    fields.update(overrides)
    return services.access_request_create(**fields)


def _count(body: str) -> str:
    match = re.search(r'data-testid="approvals-count" data-count="(\d+)"', body)
    assert match, body
    return match.group(1)


def test_the_count_is_what_the_queue_shows_never_ones_own_or_another_accounts(world: World) -> None:
    assert selectors.approval_queue_count(user=world.approver) == 0
    waiting = _request(world)
    _request(world, account=world.staging, instances=[world.stage_web])  # carol does not approve staging
    _request(world, requester=world.approver)  # her own
    decided = _request(world)
    AccessRequest.objects.filter(pk=decided.pk).update(status=RequestStatus.CANCELLED)
    assert selectors.approval_queue_count(user=world.approver) == 1
    assert [item.pk for item in selectors.approval_queue(user=world.approver)] == [waiting.pk]
    assert selectors.approval_queue_count(user=world.requester) == 0


def test_the_nav_shows_the_count_to_approvers_only(client, world: World) -> None:
    _request(world)
    _request(world)
    client.force_login(world.approver)
    body = client.get(reverse("requests:list")).content.decode()
    assert _count(body) == "2"
    assert 'hx-get="/requests/approvals/count/"' in body
    fragment = client.get(reverse("requests:approvals_count")).content.decode()
    assert _count(fragment) == "2" and "2 requests waiting for you" in fragment
    client.force_login(world.requester)
    assert 'data-testid="approvals-count"' not in client.get(reverse("requests:list")).content.decode()
    assert _count(client.get(reverse("requests:approvals_count")).content.decode()) == "0"


def test_the_queue_fragment_answers_204_until_the_queue_changes(client, world: World) -> None:
    first = _request(world)
    client.force_login(world.approver)
    page = client.get(reverse("requests:approvals")).content.decode()
    poll = re.search(r'id="approval-queue"[^>]*hx-get="([^"]+)"', page)
    assert poll and 'hx-trigger="every 5s"' in page
    url = poll.group(1).replace("&amp;", "&")
    assert _count(page) == "1"

    assert client.get(url, **HTMX).status_code == 204  # nothing new
    second = _request(world, instances=[world.db], admin_rights=True)
    changed = client.get(url, **HTMX)
    assert changed.status_code == 200
    assert changed["HX-Trigger"] == "approvals-changed"
    body = changed.content.decode()
    assert body.lstrip().startswith('<div id="approval-queue"') and "<html" not in body
    assert f'data-request="{first.pk}"' in body and f'data-request="{second.pk}"' in body

    # Decided elsewhere: it leaves the queue at the next poll.
    services.access_request_cancel(access_request=first, actor=world.requester)
    new_url = re.search(r'hx-get="([^"]+)"', body).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    after = client.get(new_url, **HTMX).content.decode()
    assert f'data-request="{first.pk}"' not in after and f'data-request="{second.pk}"' in after


def test_administrator_rights_are_a_warning_badge_on_the_queue_and_the_request(client, world: World) -> None:
    wanted = _request(world, instances=[world.db], admin_rights=True)
    plain = _request(world)
    client.force_login(world.approver)
    queue = client.get(reverse("requests:approvals")).content.decode()
    assert queue.count('class="badge badge-admin-rights" data-testid="admin-rights-badge">Administrator rights<') == 1
    row = re.search(rf'data-request="{wanted.pk}".*?</tr>', queue, flags=re.S)
    assert row and "admin-rights-badge" in row.group(0)
    detail = client.get(reverse("requests:detail", args=[wanted.pk])).content.decode()
    assert 'data-testid="admin-rights-badge">Administrator rights<' in detail
    assert "admin-rights-badge" not in client.get(reverse("requests:detail", args=[plain.pk])).content.decode()


def test_the_extend_choices_fit_the_budget_and_the_control_goes_at_twelve_hours(client, world: World) -> None:
    assert [value for value, _ in ExtendForm(left=timedelta(minutes=45)).fields["minutes"].choices] == [15, 30]  # type: ignore[attr-defined]
    assert len(ExtendForm().fields["minutes"].choices) == 5  # type: ignore[attr-defined]
    access_request = _request(world)
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE,
        activated_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
        duration=timedelta(hours=11, minutes=30),
    )
    client.force_login(world.requester)
    url = reverse("requests:detail", args=[access_request.pk])
    body = client.get(url).content.decode()
    assert 'data-testid="extend-form"' in body
    assert re.findall(r'<option value="(\d+)"', body) == ["15", "30"]
    AccessRequest.objects.filter(pk=access_request.pk).update(duration=timedelta(hours=12))
    assert 'data-testid="extend-form"' not in client.get(url).content.decode()


def test_the_extend_choices_fit_the_policy_and_a_refusal_says_why(client, world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, deny_over_duration=timedelta(hours=2))
    access_request = _request(world)
    services.access_request_approve(access_request=access_request, approver=world.approver)
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=timezone.now(), expires_at=timezone.now() + timedelta(hours=1)
    )
    client.force_login(world.requester)
    url = reverse("requests:detail", args=[access_request.pk])
    body = client.get(url).content.decode()
    assert re.findall(r'<option value="(\d+)"', body) == ["15", "30", "60"]
    assert "up to 1 h more" in body

    response = client.post(reverse("requests:action", args=[access_request.pk, "extend"]), {"minutes": 240})
    assert response.status_code == 302
    body = client.get(url).content.decode()
    assert "Acme Production allows at most 2 h per request, extensions included; this request has 1 h" in body
    access_request.refresh_from_db()
    assert access_request.extended_by == timedelta(0)

    AccessRequest.objects.filter(pk=access_request.pk).update(duration=timedelta(hours=2))
    body = client.get(url).content.decode()
    assert 'data-testid="extend-form"' not in body
    assert "this request has 2 h, so it can no longer be extended." in body


def test_a_non_approver_count_poll_is_empty(client, world: World) -> None:
    stranger = make_user("sid")
    make_membership(stranger, world.prod, "admin")
    client.force_login(stranger)
    body = client.get(reverse("requests:approvals_count")).content.decode()
    assert 'data-count="0"' in body and "nav-count-none" in body
