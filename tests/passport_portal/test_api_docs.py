"""/api/docs/ is built from the pinned swagger-ui-dist in the portal's static files, never a CDN;
only the files the page loads are published (the browser half is tests/browser/test_api_docs.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_loads_swagger_ui_from_the_portal_and_no_inline_script(client: Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    body = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', body)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in sources
    assert "/static/api/docs.js" in sources
    assert all(source.startswith("/static/") for source in sources), sources
    assert "cdn" not in body.lower() and "@latest" not in body
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body)  # every script is a file
    assert "<style" not in body and "style=" not in body


def test_the_version_is_pinned_exactly() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["swagger-ui-dist"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned)
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/swagger-ui-dist"]
    assert locked["version"] == pinned and locked["integrity"].startswith("sha512-")


def test_only_the_files_the_page_needs_are_published(client: Client) -> None:
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/vendor/swagger-ui/swagger-ui.css").status_code == 200
    # The package's demo page (loads a petstore from the internet) and its OAuth2 page: not ours.
    assert client.get("/static/vendor/swagger-ui/index.html").status_code == 404
    assert client.get("/static/vendor/swagger-ui/oauth2-redirect.html").status_code == 404
