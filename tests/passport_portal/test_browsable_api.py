"""Every API route opened in a browser answers without a server error.

A browser asks for HTML first. The browsable renderer answered that with a 500 on list views
without a queryset (and its pages run inline script the CSP refuses), so the API speaks JSON
only; this walks every ``api/`` route the resolver knows, so a route added later is covered.
"""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from tests.passport_portal.routes import RealIds, all_routes

pytestmark = [pytest.mark.django_db, pytest.mark.integration]  # devcloud stands in for AWS

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
API_ROUTES = [route for route in all_routes() if route.regex.startswith("api/")]


def test_the_sweep_finds_the_api_routes() -> None:
    names = {route.name for route in API_ROUTES}
    assert {"api-request-list", "api-account-list", "api-approval-queue"} <= names


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html"])
def test_no_api_route_answers_500_to_a_browser(everyone: User, real_ids: RealIds, accept: str) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(everyone)
    failures = []
    for route in API_ROUTES:
        for values in real_ids.candidates(route, limit=5):
            path = route.path(values)
            response = client.get(path, HTTP_ACCEPT=accept)
            if response.status_code >= 500:
                failures.append(f"{route} {path}: {response.status_code}")
    assert not failures, failures


def test_a_browser_reads_the_request_list_as_json(everyone: User, real_ids: RealIds) -> None:
    client = Client()
    client.force_login(everyone)
    response = client.get("/api/requests/", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert "<script" not in response.content.decode()
