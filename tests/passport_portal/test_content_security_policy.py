"""Every response of every route carries the strict Content-Security-Policy.

The routes come from the URL resolver (tests/passport_portal/routes.py), so a page added later
is checked too. The policy admits only the portal itself: no inline script or style, no eval,
no plugins, no framing, no <base>, forms posting here only. Three pages need one thing more,
named below with the reason, and nothing else does. Whether the pages work under it is for the
browser tests (tests/browser, tests/terminal/test_browser.py), which fail on any violation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from accounts.saml.config import _metadata_cache_key, identity_provider, identity_provider_trust_of
from accounts.saml.views import SESSION_KEY
from tests.conftest import World
from tests.passport_portal.conftest import SWEEP_IDP_SLO
from tests.passport_portal.routes import RealIds, all_routes

pytestmark = [pytest.mark.django_db, pytest.mark.integration]  # devcloud stands in for AWS

ROOT = Path(__file__).resolve().parents[2]

REQUIRED = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
# What a page may add, and why.
EXCEPTIONS: dict[str, dict[str, list[str]]] = {
    # xterm.js's own <style> elements, with the page's nonce (terminal.js hands it to them).
    "terminal:page": {"style-src-elem": ["'self'", "'nonce-*'"]},
    # asciinema-player's terminal emulator is WebAssembly.
    "terminal:recording": {"script-src": ["'self'", "'wasm-unsafe-eval'"]},
    # Swagger UI's icons are data: SVG images.
    "api-docs": {"img-src": ["'self'", "data:"]},
    # allauth's TOTP set-up shows its QR code as a data: SVG image (passport_portal/csp.py).
    "mfa_activate_totp": {"img-src": ["'self'", "data:"]},
}


def policy(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in directives, f"{name} twice in {header!r}"
        directives[name] = sources
    return directives


def _matches(sources: list[str], expected: list[str]) -> bool:
    """Sources as expected; ``'nonce-*'`` is any nonce, and absent where the page rendered none (an error page)."""
    if sources == [want for want in expected if want != "'nonce-*'"]:
        return True
    return len(sources) == len(expected) and all(
        source == want or (want == "'nonce-*'" and source.startswith("'nonce-") and len(source) > len("'nonce-'"))
        for source, want in zip(sources, expected, strict=True)
    )


def assert_strict(route: str, header: str | None) -> None:
    """The required policy, plus at most the route's own exception (absent where the view never ran)."""
    assert header, f"{route}: no Content-Security-Policy"
    found = policy(header)
    extra = EXCEPTIONS.get(route, {})
    assert set(REQUIRED) <= set(found) <= set(REQUIRED) | set(extra), f"{route}: {header}"
    for name, sources in found.items():
        allowed = [wanted for wanted in (REQUIRED.get(name), extra.get(name)) if wanted is not None]
        assert any(_matches(sources, wanted) for wanted in allowed), f"{route}: {name} {sources}, wanted {allowed}"


def _sweep(client: Client, ids: RealIds) -> int:
    """GET (or POST, where GET is not allowed) each route with real ids; every answer is checked."""
    checked = 0
    for route in all_routes():
        for values in ids.candidates(route, limit=8):
            path = route.path(values)
            response = client.get(path)
            if response.status_code == 405:
                response = client.post(path)
            assert_strict(route.name, response.headers.get("Content-Security-Policy"))
            checked += 1
    return checked


def test_every_route_sends_the_strict_policy_to_a_signed_in_person(everyone: User, real_ids: RealIds) -> None:
    client = Client()
    client.force_login(everyone)
    assert _sweep(client, real_ids) > len(all_routes())


def test_every_route_sends_the_strict_policy_to_anonymous(real_ids: RealIds) -> None:
    assert _sweep(Client(), real_ids) > len(all_routes())


def test_the_exceptions_are_on_the_pages_that_need_them(everyone: User, real_ids: RealIds) -> None:
    client = Client()
    client.force_login(everyone)
    terminal = client.get(f"/terminal/{real_ids.grant}/")
    assert terminal.status_code == 200
    nonce = policy(terminal.headers["Content-Security-Policy"])["style-src-elem"][1]
    assert f'nonce="{nonce[len("nonce-") + 1 : -1]}"' in terminal.content.decode()  # handed to terminal.js
    recording = client.get(f"/terminal/recordings/{real_ids.recording}/")
    assert recording.status_code == 200
    assert "'wasm-unsafe-eval'" in policy(recording.headers["Content-Security-Policy"])["script-src"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and "data:" in policy(docs.headers["Content-Security-Policy"])["img-src"]


def test_the_totp_qr_code_may_show(world: World) -> None:
    client = Client()
    client.post("/accounts/login/", {"login": "alice", "password": "pw-alice"})
    asked = client.get("/accounts/2fa/totp/activate/")
    client.post(asked["Location"], {"password": "pw-alice"})  # turning TOTP on asks for the password again
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    assert re.search(r'<img[^>]+src="data:image/svg\+xml', page.content.decode())
    assert policy(page.headers["Content-Security-Policy"])["img-src"] == ["'self'", "data:"]
    assert "img-src" not in policy(client.get("/accounts/2fa/").headers["Content-Security-Policy"])


def test_a_saml_sign_out_may_continue_to_its_identity_provider(
    world: World, real_ids: RealIds, client: Client, settings: Any
) -> None:
    """Signing out posts here and is redirected to the IdP: Chromium checks that redirect against form-action."""
    client.force_login(world.requester)
    assert policy(client.get("/requests/").headers["Content-Security-Policy"])["form-action"] == ["'self'"]
    session = client.session
    # As a sign-in records it: the IdP's trust then (a session without it ends at its next use).
    session[SESSION_KEY] = {
        "idp": "sweep",
        "name_id": "alice@customer.test",
        "trust": identity_provider_trust_of("sweep"),
    }
    session.save()
    sources = policy(client.get("/requests/").headers["Content-Security-Policy"])["form-action"]
    assert sources == ["'self'", SWEEP_IDP_SLO.rsplit("/", 1)[0]]
    # An IdP that is no longer configured opens nothing.
    settings.PASSPORT_SAML_IDPS = []
    assert policy(client.get("/requests/").headers["Content-Security-Policy"])["form-action"] == ["'self'"]


# What the policy refuses, as it would appear in a template. The browser tests see only the pages
# they visit; this reads every template the portal has.
_INLINE = {
    "an inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "a <style> element": re.compile(r"<style\b", re.IGNORECASE),
    "a style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "an event handler attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "a javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "htmx's inline handlers": re.compile(r"\shx-on", re.IGNORECASE),
}


_COMMENT = re.compile(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", re.DOTALL)


def _our_templates() -> list[Path]:
    roots = [
        ROOT / "templates",
        *(ROOT / app / "templates" for app in ("accounts", "requests_app", "audit", "terminal", "sshca")),
    ]
    return sorted(path for root in roots if root.is_dir() for path in root.rglob("*.html"))


def test_no_template_has_what_the_policy_refuses() -> None:
    templates = _our_templates()
    assert any(path.name == "base.html" for path in templates)
    found = [
        f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}: {what}"
        for path in templates
        for text in [_COMMENT.sub(lambda comment: "\n" * comment.group().count("\n"), path.read_text())]
        for what, pattern in _INLINE.items()
        for match in pattern.finditer(text)
    ]
    assert not found, "\n".join(found)


def test_an_idp_known_by_metadata_adds_its_logout_origin_once_read(world: World, client: Client, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = [
        {
            "slug": "meta",
            "identity_store": "customer",
            "entity_id": "https://meta-idp.invalid/metadata",
            "metadata_url": "https://meta-idp.invalid/metadata",
        }
    ]
    client.force_login(world.requester)
    session = client.session
    session[SESSION_KEY] = {
        "idp": "meta",
        "name_id": "alice@customer.test",
        "trust": identity_provider_trust_of("meta"),
    }
    session.save()
    cache.clear()
    # Not read yet: nothing is fetched for a page (the host does not even resolve), nothing added.
    assert policy(client.get("/requests/").headers["Content-Security-Policy"])["form-action"] == ["'self'"]
    idp = identity_provider("meta")
    assert idp is not None
    cache.set(_metadata_cache_key(idp), {"singleLogoutService": {"url": "https://slo.meta-idp.invalid/logout"}})
    sources = policy(client.get("/requests/").headers["Content-Security-Policy"])["form-action"]
    assert sources == ["'self'", "https://slo.meta-idp.invalid"]
    cache.clear()
