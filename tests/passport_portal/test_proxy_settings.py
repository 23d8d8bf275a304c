"""X-Forwarded-Proto is believed only when the operator says a proxy sets it.

The settings module is read once per process, so each case starts a fresh Python with
production settings and asks Django's own SecurityMiddleware what it makes of a plain-http
request that claims, by the header, to have come over https.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.passport_portal.production_env import PRODUCTION_LOGBOOK_ENV, PRODUCTION_MAIL_ENV, secret_for_tests

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.test import RequestFactory
request = RequestFactory().get("/requests/", headers={"X-Forwarded-Proto": "https"}, SERVER_NAME="passport.example.com")
response = SecurityMiddleware(lambda request: HttpResponse("the page"))(request)
print(json.dumps({"header": settings.SECURE_PROXY_SSL_HEADER, "secure": request.is_secure(),
                  "status": response.status_code, "location": response.get("Location")}))
"""


def _production(**extra: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PASSPORT_", "DJANGO_"))}
    env.update(
        PASSPORT_ENV="production",
        DJANGO_SETTINGS_MODULE="passport_portal.settings",
        PASSPORT_SECRET_KEY=secret_for_tests("PASSPORT_SECRET_KEY", 50),
        PASSPORT_USERNAME_KEY=secret_for_tests("PASSPORT_USERNAME_KEY", 32),
        PASSPORT_ALLOWED_HOSTS="passport.example.com",
        PASSPORT_CA_ENCRYPTION_KEY=secret_for_tests("PASSPORT_CA_ENCRYPTION_KEY", 40),
        DATABASE_URL="postgres://passport@db.invalid/passport",
        REDIS_URL="redis://redis.invalid:6379/0",
        **PRODUCTION_LOGBOOK_ENV,
        **PRODUCTION_MAIL_ENV,
        **extra,
    )
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _answer(**extra: str) -> dict[str, Any]:
    result = _production(**extra)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_by_default_the_header_is_not_believed() -> None:
    answer = _answer()
    assert answer["header"] is None
    assert answer["secure"] is False
    # Plain http stays plain http: sent to https, whatever the header says.
    assert answer["status"] == 301 and answer["location"] == "https://passport.example.com/requests/"


@pytest.mark.parametrize("value", ["true", "1", "yes", "on"])
def test_a_trusted_proxy_header_is_believed(value: str) -> None:
    answer = _answer(PASSPORT_TRUST_X_FORWARDED_PROTO=value)
    assert answer["header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert answer["secure"] is True
    assert answer["status"] == 200


@pytest.mark.parametrize("value", ["false", "0", "no", "off"])
def test_trust_can_be_said_no_to(value: str) -> None:
    assert _answer(PASSPORT_TRUST_X_FORWARDED_PROTO=value)["secure"] is False


def test_a_malformed_boolean_stops_the_start() -> None:
    result = _production(PASSPORT_TRUST_X_FORWARDED_PROTO="ture")
    assert result.returncode != 0
    assert "PASSPORT_TRUST_X_FORWARDED_PROTO" in result.stderr and "not a boolean" in result.stderr
