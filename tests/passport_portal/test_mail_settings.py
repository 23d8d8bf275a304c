"""Production sends mail through a mail server, never to its own log: a password-reset mail sets a
break-glass site admin's password. The demo and the tests keep printing mails (or holding them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.passport_portal.production_env import ROOT, start_production

PROBE = (
    "import json, passport_portal.settings as s; print(json.dumps([s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT,"
    " s.EMAIL_USE_TLS, s.EMAIL_HOST_PASSWORD, s.EMAIL_TIMEOUT]))"
)
SMTP = "django.core.mail.backends.smtp.EmailBackend"


def _settings(started: subprocess.CompletedProcess[str]) -> list[object]:
    assert started.returncode == 0, started.stderr
    return list(json.loads(started.stdout.strip().splitlines()[-1]))


def test_production_sends_through_the_mail_server_it_is_given(tmp_path: Path) -> None:
    password = tmp_path / "smtp-password"
    password.write_text("smtp-secret\n")
    started = start_production(
        PROBE,
        PASSPORT_EMAIL_HOST="smtp.example.test",
        PASSPORT_EMAIL_PORT="587",
        PASSPORT_EMAIL_USE_TLS="true",
        PASSPORT_EMAIL_HOST_PASSWORD_FILE=str(password),
    )
    assert _settings(started) == [SMTP, "smtp.example.test", 587, True, "smtp-secret", 10]


def test_production_refuses_to_start_without_a_mail_server() -> None:
    started = start_production(PROBE, PASSPORT_EMAIL_HOST=None)
    assert started.returncode != 0
    assert "PASSPORT_EMAIL_HOST is required in production" in started.stderr


@pytest.mark.parametrize("backend", ["console", "filebased", "locmem", "dummy"])
def test_production_refuses_a_backend_that_keeps_mails_on_the_host_or_drops_them(backend: str) -> None:
    started = start_production(PROBE, PASSPORT_EMAIL_BACKEND=f"django.core.mail.backends.{backend}.EmailBackend")
    assert started.returncode != 0, f"production started with the {backend} mail backend"
    assert "production needs a mail server" in started.stderr


def test_starttls_and_tls_from_the_start_are_one_or_the_other() -> None:
    started = start_production(PROBE, PASSPORT_EMAIL_USE_TLS="true", PASSPORT_EMAIL_USE_SSL="true")
    assert started.returncode != 0
    assert "set one, not both" in started.stderr


def test_the_deploy_example_mail_settings_start_production() -> None:
    example = (ROOT / "deploy" / "passport.env.example").read_text()
    mail = dict(
        line.split("=", 1) for line in example.splitlines() if line.startswith("PASSPORT_EMAIL_") and "=" in line
    )
    assert "PASSPORT_EMAIL_HOST" in mail
    started = start_production(PROBE, **mail)
    assert _settings(started)[:4] == [SMTP, mail["PASSPORT_EMAIL_HOST"], int(mail["PASSPORT_EMAIL_PORT"]), True]


@pytest.mark.parametrize("passport_env", ["development", "test"])
def test_the_demo_and_the_tests_print_mails_without_a_mail_server(passport_env: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PASSPORT_", "DJANGO_"))}
    started = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**env, "PASSPORT_ENV": passport_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert _settings(started)[:2] == ["django.core.mail.backends.console.EmailBackend", "localhost"]
