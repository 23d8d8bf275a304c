"""Secrets and personal answers are never kept by a browser or proxy cache."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.passwords import seal_password
from tests.conftest import World

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_windows_passwords_and_every_api_answer_are_no_store(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.windows], reason="RDP"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    grant = Grant.objects.get(request=access_request)
    Grant.objects.filter(pk=grant.pk).update(
        status=GrantStatus.READY, ready_at=now, password_sealed=seal_password(grant, "Sealed-Pass-0001")
    )
    client = Client()
    client.force_login(world.requester)

    api = client.post(f"/api/requests/{access_request.pk}/grants/{world.windows.instance_id}/password/")
    page = client.post(f"/requests/{access_request.pk}/grants/{grant.pk}/password/")
    listing = client.get("/api/requests/")

    assert api.status_code == 200 and "Sealed-Pass-0001" in api.content.decode()
    assert page.status_code == 200 and "Sealed-Pass-0001" in page.content.decode()
    for response in (api, page, listing):
        assert "no-store" in response["Cache-Control"]
