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


def _polled(client: Client, url: str) -> Any:
    return client.get(url, HTTP_HX_REQUEST="true")


def test_pages_and_polled_fragments_of_a_signed_in_person_are_private_and_not_stored(world: World) -> None:
    # Other people's names and reasons, and the page's CSRF token: in no shared or disk cache.
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="fix the disk"
    )
    client = Client()
    client.force_login(world.approver)
    detail = f"/requests/{access_request.pk}/"
    answers = {
        "queue page": client.get("/requests/approvals/"),
        "queue fragment": _polled(client, "/requests/approvals/?fragment=queue&seen=x"),
        "request page": client.get(detail),
        "status fragment": _polled(client, f"{detail}?fragment=status&seen=pending:x"),
        "status unchanged": _polled(client, f"{detail}?fragment=status&seen=approved:x"),
        "my requests": client.get("/requests/"),
    }

    assert "fix the disk" in answers["queue fragment"].content.decode()
    for name, response in answers.items():
        assert response.status_code in (200, 204), name
        assert response["Cache-Control"] == "private, no-store", name
    # One URL answers the whole page or its fragment: a cache (the browser's back button) must
    # not give one for the other.
    for name in ("queue page", "queue fragment", "request page", "status fragment"):
        assert "HX-Request" in answers[name]["Vary"], name


def test_what_sets_its_own_caching_keeps_it_and_signed_out_answers_are_left_alone(world: World, settings: Any) -> None:
    settings.PASSPORT_METRICS_TOKEN = "metrics-token-for-the-tests-0123456789"
    client = Client()
    client.force_login(world.approver)

    favicon = client.get("/favicon.ico")
    static = client.get("/static/vendor/htmx/htmx.min.js")
    healthz = client.get("/healthz")
    metrics = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.PASSPORT_METRICS_TOKEN}")
    live = client.get("/terminal/live/")  # never_cache's own header
    signed_out = Client().get("/requests/")  # to the sign-in page

    assert favicon["Cache-Control"] == "public, max-age=86400"
    assert static.status_code == 200 and static["Cache-Control"] == "max-age=60, public"
    assert healthz["Cache-Control"] == metrics["Cache-Control"] == "no-store"
    assert (
        live.status_code == 200 and live["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    )
    assert signed_out.status_code == 302 and not signed_out.has_header("Cache-Control")
