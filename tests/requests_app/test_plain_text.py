"""Reasons and decision notes are plain text: terminal escapes, other control characters and bidi
overrides are refused with a message that names them (the web form, the API, the service), and
nothing is saved; newlines, tabs, joiners and any script stay."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from core.text import unsafe_characters
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from tests.requests_app.test_api import create_payload, make_request, signed_in

pytestmark = pytest.mark.django_db

HOSTILE = [
    ("\x1b]0;pwned\x07 fix nginx", "U+001B, U+0007"),
    ("deploy \u202egnp.exe", "U+202E"),
    ("isolate \u2067x\u2069 and mark \u200f", "U+2067, U+2069, U+200F"),
    ("line\u2028separator", "U+2028"),
    ("del \x7f and c1 \x9b", "U+007F, U+009B"),
    # Invisible: zero-width space, word joiner, byte-order mark, and tag characters spelling "ign".
    ("routine\u200b patching\u2060\ufeff", "U+200B, U+2060, U+FEFF"),
    ("routine patching\U000e0069\U000e0067\U000e006e", "U+E0069, U+E0067, U+E006E"),
]


@pytest.mark.parametrize(
    ("text", "found"),
    [*HOSTILE, ("nul \x00 \x00 vt \x0b", "U+0000, U+000B"), ("ok\n\ttabs, 👩‍💻 مرحبا नमस्ते", "")],
)
def test_what_is_refused(text: str, found: str) -> None:
    assert ", ".join(unsafe_characters(text)) == found


@pytest.mark.parametrize(("reason", "found"), HOSTILE)
def test_the_api_refuses_a_hostile_reason_and_saves_nothing(world: World, reason: str, found: str) -> None:
    client = signed_in(APIClient(), world.requester)
    response = client.post("/api/requests/", create_payload(world, reason=reason), format="json")
    assert response.status_code == 400, response.content
    message = response.json()["reason"][0]
    assert "control or direction-changing characters" in message and found.split(",")[0] in message
    assert not AccessRequest.objects.exists()
    assert not LogbookEntry.objects.filter(action="request.created").exists()


def test_the_form_says_so_beside_the_reason(world: World) -> None:
    client = Client()
    client.force_login(world.requester)
    response = client.post(
        "/requests/new/",
        {"account": world.prod.pk, "instances": [world.web.pk], "duration": 60, "reason": "go \u202eexe"},
    )
    assert response.status_code == 200
    assert "contains control or direction-changing characters (U+202E)" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_a_multi_line_reason_in_any_script_is_kept(world: World) -> None:
    reason = "Line one\n\tline two: 👩‍💻 مرحبا"
    assert make_request(world, reason=reason).reason == reason


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_a_hostile_decision_note_is_refused_and_the_request_stays_pending(world: World, action: str) -> None:
    access_request = make_request(world)
    client: Any = signed_in(APIClient(), world.approver)
    response = client.post(f"/api/requests/{access_request.pk}/{action}/", {"note": "ok \x1b[2J"}, format="json")
    assert response.status_code == 400, response.content
    assert "U+001B" in str(response.json())
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
