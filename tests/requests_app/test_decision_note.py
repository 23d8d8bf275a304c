"""An approver's note is kept whole or refused, never cut: the request's page, its Logbook entry
and the requester read all of what the approver wrote. The API, the page and the service each
refuse a note past the limit (256 characters, what the request row keeps)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from tests.requests_app.test_api import make_request, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

LIMIT = 256
# What a cut would have hidden: the note's last words.
TOO_LONG = "x" * (LIMIT - 6) + " DO NOT GIVE SUDO"


def _approve_through_the_api(user: Any, access_request: AccessRequest, note: str) -> Any:
    client = signed_in(APIClient(), user)
    return client.post(f"/api/requests/{access_request.pk}/approve/", {"note": note}, format="json")


def test_the_api_refuses_an_approval_note_past_the_limit(world: World) -> None:
    access_request = make_request(world)

    response = _approve_through_the_api(world.approver, access_request, TOO_LONG)

    assert response.status_code == 400
    assert str(LIMIT) in response.json()["note"][0]
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    assert not LogbookEntry.objects.filter(action="request.approved").exists()


def test_an_approval_note_at_the_limit_is_kept_whole(world: World) -> None:
    access_request = make_request(world)
    note = "y" * (LIMIT - 4) + " end"

    response = _approve_through_the_api(world.approver, access_request, note)

    assert response.status_code == 200, response.json()
    access_request.refresh_from_db()
    assert access_request.decision_note == note
    assert LogbookEntry.objects.get(action="request.approved").detail["note"] == note


def test_the_page_shows_an_approval_note_past_the_limit_again_with_the_error(world: World) -> None:
    access_request = make_request(world)
    client = Client()
    client.force_login(world.approver)

    response = client.post(reverse("requests:action", args=[access_request.pk, "approve"]), {"note": TOO_LONG})

    assert response.status_code == 400
    page = response.content.decode()
    assert "at most 256 characters" in page
    assert f'value="{TOO_LONG}"' in page  # what was typed is there to shorten, not lost
    assert 'maxlength="256"' in page
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING


def test_the_page_keeps_an_approval_note_at_the_limit(world: World) -> None:
    access_request = make_request(world)
    client = Client()
    client.force_login(world.approver)
    note = "z" * LIMIT

    response = client.post(reverse("requests:action", args=[access_request.pk, "approve"]), {"note": note})

    assert response.status_code == 302
    access_request.refresh_from_db()
    assert (access_request.status, access_request.decision_note) == (RequestStatus.APPROVED, note)


@pytest.mark.parametrize("decide", [services.access_request_approve, services.access_request_reject])
def test_the_service_refuses_a_note_past_the_limit_instead_of_cutting_it(world: World, decide: Any) -> None:
    access_request = make_request(world)

    with pytest.raises(RequestRuleError) as refused:
        decide(access_request=access_request, approver=world.approver, note=TOO_LONG)

    assert list(refused.value.errors) == ["note"]
    assert str(LIMIT) in refused.value.errors["note"][0]
    access_request.refresh_from_db()
    assert (access_request.status, access_request.decision_note) == (RequestStatus.PENDING, "")
