"""Headless Chromium (Debian's package) driven by Playwright, against a live portal."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.csp import CspWatch

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between page actions are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module's tests. Playwright's sync API keeps an event loop running in
    this thread while it is open, which would break every later test that calls asyncio.run(),
    so it never outlives the browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def csp_watch() -> CspWatch:
    return CspWatch()


@pytest.fixture
def new_page(browser: Any, csp_watch: CspWatch) -> Iterator[Any]:
    """Pages in fresh contexts; the test fails if any page broke the Content-Security-Policy."""
    contexts = []

    def make() -> Any:
        context = csp_watch.attach(browser.new_context(viewport={"width": 1280, "height": 900}))
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
    csp_watch.assert_none()
