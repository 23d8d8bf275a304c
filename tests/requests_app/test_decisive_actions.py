"""Reject, cancel and complete ask again on a page that says what they will do; a rejection says why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, EndReason, RequestStatus
from tests.conftest import World

pytestmark = pytest.mark.django_db


def _request(world: World) -> AccessRequest:
    return services.access_request_create(
        requester=world.requester,
        account=world.prod,
        instances=[world.web, world.db],
        reason="CPU alarm on the database",
        ticket="INC-1",
    )


def test_the_detail_page_leads_to_a_confirmation_not_straight_to_the_action(client, world: World) -> None:
    access_request = _request(world)
    client.force_login(world.requester)
    body = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    cancel_url = reverse("requests:action", args=[access_request.pk, "cancel"])
    assert f'href="{cancel_url}"' in body
    assert f'action="{cancel_url}"' not in body  # no one-click form
    page = client.get(cancel_url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Cancel request #" in text and "cannot be undone" in text and f'action="{cancel_url}"' in text
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING  # asking did nothing yet


def test_the_complete_confirmation_says_terminals_end(client, world: World) -> None:
    access_request = _request(world)
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, expires_at=timezone.now() + timedelta(hours=1)
    )
    client.force_login(world.requester)
    text = client.get(reverse("requests:action", args=[access_request.pk, "complete"])).content.decode()
    assert "every open terminal" in text and "users are removed" in text


def test_an_unavailable_action_has_no_confirmation(client, world: World) -> None:
    access_request = _request(world)
    client.force_login(world.requester)  # may not reject their own request
    response = client.get(reverse("requests:action", args=[access_request.pk, "reject"]))
    assert response.status_code == 302 and response["Location"] == reverse("requests:detail", args=[access_request.pk])
    assert client.get(reverse("requests:action", args=[access_request.pk, "approve"])).status_code == 405
    client.force_login(world.outsider)
    assert client.get(reverse("requests:action", args=[access_request.pk, "cancel"])).status_code == 404


def test_a_rejection_needs_a_reason(client, world: World) -> None:
    access_request = _request(world)
    client.force_login(world.approver)
    confirm_url = reverse("requests:action", args=[access_request.pk, "reject"])
    assert 'name="note"' in client.get(confirm_url).content.decode()
    response = client.post(confirm_url, {"note": "  "})
    assert response.status_code == 302 and response["Location"] == confirm_url
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING


def test_the_reason_reaches_the_requester_and_the_logbook(client, world: World) -> None:
    access_request = _request(world)
    client.force_login(world.approver)
    client.post(reverse("requests:action", args=[access_request.pk, "reject"]), {"note": "Use staging <b>first</b>"})
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.REJECTED
    assert access_request.decision_note == "Use staging <b>first</b>"
    entry = LogbookEntry.objects.get(action="request.rejected", request_id=access_request.pk)
    assert entry.detail["note"] == "Use staging <b>first</b>"

    client.force_login(world.requester)
    body = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    assert "Use staging &lt;b&gt;first&lt;/b&gt;" in body and "<b>first</b>" not in body
    # Nothing was ever created on the instances: not "Removed, 0 attempts".
    assert body.count('data-status="not_provisioned"') == 2
    assert 'data-status="removed"' not in body


def test_a_completed_request_names_who_completed_it(client, world: World) -> None:
    access_request = _request(world)
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.COMPLETED,
        end_reason=EndReason.COMPLETED,
        ended_by=world.approver,
        ended_at=timezone.now(),
    )
    client.force_login(world.requester)
    body = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    assert f"Completed by {world.approver.label}" in body
