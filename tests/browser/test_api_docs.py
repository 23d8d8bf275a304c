"""The browsable API (/api/docs/) in Chromium: Swagger UI from the portal's own static files,
started by its own script under the Content-Security-Policy, with no request leaving the portal."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_db")]


def test_the_api_docs_show_the_operations_with_nothing_from_outside(new_page: Any, live_server: Any) -> None:
    page = new_page()
    outside: list[str] = []
    local: list[str] = []

    def only_the_portal(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname in ("127.0.0.1", "localhost"):
            local.append(url)
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.context.route("**/*", only_the_portal)
    page.goto(f"{live_server.url}/api/docs/")
    operations = page.locator("#swagger-ui .opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() > 10
    expect(page.locator("#swagger-ui")).to_contain_text("/api/requests/{id}/approve/")
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("Passport API")
    # The UI and the schema came from the portal; nothing else was even asked for.
    assert any("/static/vendor/swagger-ui/swagger-ui-bundle.js" in url for url in local), local
    assert any("/api/schema/" in url for url in local), local
    assert outside == [], outside
