"""The project-wide API plumbing: one error format for every app's endpoints, and request bodies
that are text."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from passport_portal.api.exception_handlers import rule_error_body
from requests_app.models import AccessRequest
from tests.conftest import World

LONE_SURROGATE = "JSON parse error - a string is not Unicode text (it holds a lone surrogate, \\ud800 to \\udfff)."


def test_rule_error_body_shapes() -> None:
    assert rule_error_body({"__all__": ["One.", "Two."]}) == {"detail": "One. Two."}
    assert rule_error_body({"__all__": ["Whole."], "reason": ["Field."]}) == {
        "non_field_errors": ["Whole."],
        "reason": ["Field."],
    }


# JSON may spell a lone surrogate (\ud800 to \udfff), which no UTF-8 text holds: an error message
# quoting it (a ChoiceField's "... is not a valid choice") could not be written out, a 500.
@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"document": "\\ud800", "port": 22}', id="value"),
        pytest.param('{"document": "AWS-StartSSHSession", "port": 22, "\\udfff": 1}', id="key"),
        pytest.param('{"document": "AWS-StartSSHSession", "port": [1, {"a": ["x\\udc80y"]}]}', id="nested"),
        pytest.param('["\\ud83d"]', id="in a list"),
    ],
)
@pytest.mark.django_db
def test_a_json_body_with_a_lone_surrogate_is_a_400_before_any_view(world: World, body: str) -> None:
    client = APIClient()
    client.force_authenticate(world.requester)

    response = client.post("/api/requests/1/grants/i-0000000000000001/session/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"detail": LONE_SURROGATE}


@pytest.mark.django_db
def test_a_json_body_with_a_surrogate_pair_is_text(world: World, settings: Any) -> None:
    # An escaped pair is one character beyond the Basic Multilingual Plane: as good as any other.
    settings.PASSPORT_IAM_CHECK = False
    client = APIClient()
    client.force_authenticate(world.requester)
    body = (
        f'{{"account": "{world.prod.account_id}", "instances": ["{world.web.instance_id}"], '
        '"reason": "Deploy \\ud83d\\ude00", "ticket": "INC-1"}'
    )

    response = client.post("/api/requests/", body, content_type="application/json")

    assert response.status_code == 201, response.json()
    assert AccessRequest.objects.get().reason == "Deploy \U0001f600"
