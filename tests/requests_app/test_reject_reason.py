"""A rejection says why through the API as on the web page: a blank reason is a 400 that says so,
and the request stays pending; someone who may not reject still meets the service's refusal."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from requests_app.apis.access_requests import REJECT_REASON_REQUIRED
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from tests.requests_app.test_api import make_request, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _reject(user: Any, access_request: AccessRequest, body: dict[str, Any] | None) -> Any:
    client = signed_in(APIClient(), user)
    return client.post(f"/api/requests/{access_request.pk}/reject/", body, format="json")


@pytest.mark.parametrize("body", [None, {}, {"note": ""}, {"note": "   \n\t "}])
def test_a_rejection_without_a_reason_is_a_400_that_says_so(world: World, body: dict[str, Any] | None) -> None:
    access_request = make_request(world)

    response = _reject(world.approver, access_request, body)

    assert response.status_code == 400
    assert response.json() == {"note": [REJECT_REASON_REQUIRED]}
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    assert not LogbookEntry.objects.filter(action="request.rejected").exists()


def test_a_reason_past_256_characters_is_refused_not_cut(world: World) -> None:
    access_request = make_request(world)

    response = _reject(world.approver, access_request, {"note": "x" * 257})

    assert response.status_code == 400 and "256" in response.json()["note"][0]
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING


def test_a_rejection_with_a_reason_reaches_the_requester_and_the_logbook(world: World) -> None:
    access_request = make_request(world)

    response = _reject(world.approver, access_request, {"note": "  Use the staging copy first "})

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["decision_note"]) == ("rejected", "Use the staging copy first")
    entry = LogbookEntry.objects.get(action="request.rejected")
    assert entry.detail["note"] == "Use the staging copy first"


def test_someone_who_may_not_reject_is_refused_as_before(world: World) -> None:
    access_request = make_request(world)

    response = _reject(world.requester, access_request, {"note": ""})

    assert response.status_code == 403
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING


def test_an_approval_still_needs_no_note(world: World) -> None:
    access_request = make_request(world)
    client = signed_in(APIClient(), world.approver)

    response = client.post(f"/api/requests/{access_request.pk}/approve/", {}, format="json")

    assert response.status_code == 200 and response.json()["status"] in ("approved", "provisioning", "active")


def test_the_schema_says_a_rejection_takes_a_reason(world: World) -> None:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    note = schema["components"]["schemas"]["RejectInput"]["properties"]["note"]
    assert note["maxLength"] == 256 and "required" in note["description"]
