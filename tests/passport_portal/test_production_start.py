"""A production web process (daphne imports passport_portal.asgi) or Celery worker refuses unsafe or
broken settings at its start, as ``manage.py`` commands do: debug pages, an empty evidence bucket, a
signing key that is no key, and the system checks' errors (SAML, the base URL) daphne and Celery never ran."""

from __future__ import annotations

import json

import pytest

from tests.passport_portal.production_env import start_production

# What `daphne passport_portal.asgi:application` does before it serves (deploy/systemd/passport-web@.service).
WEB = "import passport_portal.asgi"
# What `celery -A passport_portal worker` (and beat) does before it takes a task: load the task modules.
WORKER = "from passport_portal.celery import app; app.loader.import_default_modules()"
REACHABLE = {"PASSPORT_BASE_URL": "https://passport.example.test"}


@pytest.mark.parametrize("probe", [WEB, WORKER], ids=["web", "worker"])
def test_production_starts(probe: str) -> None:
    started = start_production(probe, **REACHABLE)
    assert started.returncode == 0, started.stderr


HTTP_IDP = json.dumps(
    [
        {
            "slug": "corp",
            "identity_store": "customer",
            "entity_id": "e",
            "sso_url": "http://idp.example.test/sso",
            "x509cert": "MIIB",
        }
    ]
)
SP_KEY = "-----BEGIN PRIVATE KEY-----\nMIIBsecretsecret\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        # README: "PASSPORT_DEBUG ... never on in production"
        ({"PASSPORT_DEBUG": "1"}, "PASSPORT_DEBUG is on with PASSPORT_ENV=production"),
        # a checkpoint signing key that is no key: the first checkpoint, a minute later, would fail
        (
            {"PASSPORT_LOGBOOK_SIGNING_KEY": "not-a-key-but-a-secret-0123456789"},
            "PASSPORT_LOGBOOK_SIGNING_KEY is not an unencrypted PEM private key",
        ),
        # "required in production", given empty: checkpoints silently off
        ({"PASSPORT_EVIDENCE_BUCKET": ""}, "PASSPORT_EVIDENCE_BUCKET is empty"),
        ({"PASSPORT_EVIDENCE_BUCKET": "  "}, "PASSPORT_EVIDENCE_BUCKET is empty"),
        # system checks only `manage.py check` ran before
        ({"PASSPORT_SAML_IDPS": HTTP_IDP}, "passport.E101"),
        ({"PASSPORT_SAML_SP_KEY": SP_KEY}, "passport.E102"),
        ({"PASSPORT_BASE_URL": "http://localhost:8000"}, "passport.E004"),
        ({"PASSPORT_BASE_URL": None}, "passport.E004"),
    ],
    ids=[
        "debug-on",
        "signing-key-garbage",
        "evidence-bucket-empty",
        "evidence-bucket-blank",
        "saml-http-idp",
        "saml-sp-key-without-cert",
        "base-url-localhost",
        "base-url-unset",
    ],
)
@pytest.mark.parametrize("probe", [WEB, WORKER], ids=["web", "worker"])
def test_production_refuses_to_start(probe: str, changes: dict[str, str | None], said: str) -> None:
    started = start_production(probe, **{**REACHABLE, **changes})
    assert started.returncode != 0, f"production started with {sorted(changes)}"
    assert said in started.stderr, started.stderr
    for value in changes.values():  # the message names the setting, never a secret's value
        if value and ("secret" in value or "PRIVATE KEY" in value):
            assert value.strip() not in started.stderr


def test_the_system_checks_refusal_is_a_message_not_a_traceback() -> None:
    started = start_production(WEB, PASSPORT_SAML_SP_KEY=SP_KEY, PASSPORT_BASE_URL="http://localhost:8000")
    assert started.returncode == 1
    assert "Traceback" not in started.stderr, started.stderr
    assert "Passport's web process will not start: the system checks found 2 error(s)." in started.stderr
    assert "passport.E102" in started.stderr and "passport.E004" in started.stderr
    assert "MIIBsecretsecret" not in started.stderr


def test_debug_pages_never_show_the_database_password() -> None:
    """Why debug-on matters: Django's debug page masks settings named like KEY|SECRET|PASS|TOKEN, but
    shows DATABASE_URL, REDIS_URL and CELERY_BROKER_URL whole. Production does not start with it."""
    probe = (
        "import django; django.setup(); from django.views.debug import SafeExceptionReporterFilter as F; "
        "s = F().get_safe_settings(); print(s['DEBUG'], s['DATABASE_URL'], s['CELERY_BROKER_URL'])"
    )
    started = start_production(
        probe,
        PASSPORT_DEBUG="1",
        DJANGO_SETTINGS_MODULE="passport_portal.settings",
        DATABASE_URL="postgres://passport:db-password-123@db.invalid/passport",
        REDIS_URL="redis://:redis-password-456@redis.invalid:6379/0",
    )
    assert started.returncode != 0
    assert "db-password-123" not in started.stdout + started.stderr
    assert "redis-password-456" not in started.stdout + started.stderr
