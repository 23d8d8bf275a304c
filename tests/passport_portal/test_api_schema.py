"""/api/schema/ is public (tests/accounts/test_authorization_matrix.py: "the OpenAPI document") and
unthrottled, so each web process builds it once, not on every call: it changes only on deploy.
Building it costs several times a sign-in page's CPU, a lever for anyone on the internet."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from tests.conftest import World

pytestmark = pytest.mark.django_db

JSON = "application/vnd.oai.openapi+json"


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the times drf-spectacular builds the schema."""
    counted: list[int] = []
    build = SchemaGenerator.get_schema

    def counting(self: SchemaGenerator, *args: Any, **kwargs: Any) -> Any:
        counted.append(1)
        return build(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counting)
    return counted


def test_the_schema_is_built_once_per_process(world: World, builds: list[int]) -> None:
    stranger, signed_in = Client(), Client()
    signed_in.force_login(world.requester)
    first = stranger.get("/api/schema/", HTTP_ACCEPT=JSON)
    assert first.status_code == 200
    assert "/api/requests/" in first.json()["paths"]
    # Anyone, any format, any query: the one document, built at most once.
    answers = [
        stranger.get("/api/schema/", HTTP_ACCEPT=JSON),
        signed_in.get("/api/schema/", HTTP_ACCEPT=JSON),
        stranger.get("/api/schema/?version=x&lang=zz", HTTP_ACCEPT=JSON),
        stranger.get("/api/schema/?format=yaml"),
    ]
    assert len(builds) <= 1, f"built {len(builds)} times for {1 + len(answers)} calls"
    assert all(answer.status_code == 200 for answer in answers)
    assert all(answer.json() == first.json() for answer in answers[:3])
    assert yaml.safe_load(answers[3].content) == first.json()


def test_the_cached_schema_is_the_one_drf_spectacular_builds(world: World) -> None:
    served = Client().get("/api/schema/", HTTP_ACCEPT=JSON).json()
    built = SchemaGenerator().get_schema(request=None, public=True)
    assert served["paths"].keys() == built["paths"].keys()
    assert served["info"] == built["info"]
