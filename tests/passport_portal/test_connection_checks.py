"""``check --deploy`` warns of Redis and PostgreSQL reached across the network without a password or checked TLS,
refuses production with the IAM gate off, and gives each finding its own id."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks

from tests.passport_portal.production_env import PRODUCTION_LOGBOOK_ENV, PRODUCTION_MAIL_ENV

ROOT = Path(__file__).resolve().parents[2]


def _check_deploy(deploy: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py check --deploy`` as scripts/test runs it, in a fresh process with production settings."""
    environ = {
        **os.environ,
        **PRODUCTION_LOGBOOK_ENV,
        **PRODUCTION_MAIL_ENV,
        "PASSPORT_ENV": "production",
        "PASSPORT_SECRET_KEY": secrets.token_urlsafe(48),
        "PASSPORT_USERNAME_KEY": secrets.token_urlsafe(48),
        "PASSPORT_ALLOWED_HOSTS": "passport.example.com",
        "PASSPORT_BASE_URL": "https://passport.example.com",
        "PASSPORT_CA_ENCRYPTION_KEY": secrets.token_urlsafe(48),
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/passport",
        "PASSPORT_HANDOFF_KMS_KEY": "alias/passport-handoff",
        **env,
    }
    # The browser tests set it for this process; a deployment never has it (Django's own check says so).
    environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    if "PASSPORT_IAM_CHECK" not in env:
        environ.pop("PASSPORT_IAM_CHECK", None)  # a deployment leaves it at its default
    return subprocess.run(
        [sys.executable, "manage.py", "check", *(["--deploy"] if deploy else []), "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_same_host_connections_pass() -> None:
    for redis_url, database_url in [
        ("redis://127.0.0.1:6379/0", "postgres://postgres@127.0.0.1:5432/passport"),
        ("unix:///run/redis/redis.sock?db=0", "postgres://passport@%2Frun%2Fpostgresql/passport"),
        ("redis://localhost:6379/0", "postgres://passport@[::1]:5432/passport"),
    ]:
        done = _check_deploy(REDIS_URL=redis_url, DATABASE_URL=database_url)
        assert done.returncode == 0, (redis_url, database_url, done.stderr)


@pytest.mark.parametrize(
    ("redis_url", "expected"),
    [
        ("redis://redis.internal:6379/0", ["no password", "no TLS"]),
        ("redis://:secret@10.0.0.5:6379/0", ["no TLS"]),
        ("rediss://passport:secret@redis.internal:6380/0?ssl_cert_reqs=none", ["not checked"]),
        ("rediss://redis.internal:6380/0?ssl_cert_reqs=required", ["no password"]),
    ],
)
def test_a_remote_redis_without_password_or_checked_tls_warns(redis_url: str, expected: list[str]) -> None:
    done = _check_deploy(REDIS_URL=redis_url)
    assert done.returncode != 0
    assert "passport.W001" in done.stderr
    for words in expected:
        assert words in done.stderr


def test_a_remote_database_without_password_or_verify_full_warns() -> None:
    done = _check_deploy(DATABASE_URL="postgres://passport@db.internal:5432/passport?sslmode=require")
    assert done.returncode != 0 and "passport.W002" in done.stderr
    assert "no password" in done.stderr and "verify-full" in done.stderr


def test_remote_connections_with_password_and_checked_tls_pass() -> None:
    done = _check_deploy(
        REDIS_URL="rediss://passport:secret@redis.internal:6380/0?ssl_cert_reqs=required",
        DATABASE_URL="postgres://passport:secret@db.internal:5432/passport?sslmode=verify-full",
    )
    assert "passport.W00" not in done.stderr, done.stderr


def test_plain_smtp_to_a_remote_mail_server_warns() -> None:
    """Password-reset links of break-glass site admins, and the SMTP password, would cross the network readable."""
    done = _check_deploy(
        PASSPORT_EMAIL_HOST="smtp.example.test",
        PASSPORT_EMAIL_PORT="25",
        PASSPORT_EMAIL_HOST_USER="passport",
        PASSPORT_EMAIL_HOST_PASSWORD="mail-secret",
        PASSPORT_EMAIL_USE_TLS="false",
    )
    assert done.returncode != 0
    assert "passport.W006" in done.stderr and "PASSPORT_EMAIL_HOST" in done.stderr
    assert "mail-secret" not in done.stderr


@pytest.mark.parametrize(
    "mail",
    [
        {"PASSPORT_EMAIL_HOST": "smtp.example.test", "PASSPORT_EMAIL_USE_TLS": "true"},
        {
            "PASSPORT_EMAIL_HOST": "smtp.example.test",
            "PASSPORT_EMAIL_USE_SSL": "true",
            "PASSPORT_EMAIL_USE_TLS": "false",
        },
        {"PASSPORT_EMAIL_HOST": "localhost", "PASSPORT_EMAIL_USE_TLS": "false"},  # a relay on this host
        {"PASSPORT_EMAIL_HOST": "127.0.0.1", "PASSPORT_EMAIL_USE_TLS": "false"},
    ],
    ids=["starttls", "tls", "localhost", "loopback"],
)
def test_smtp_with_tls_or_on_this_host_passes(mail: dict[str, str]) -> None:
    done = _check_deploy(**mail)
    assert done.returncode == 0, done.stderr
    assert "passport.W006" not in done.stderr


def test_production_with_the_iam_gate_off_fails_check_deploy() -> None:
    done = _check_deploy(PASSPORT_IAM_CHECK="false")
    assert done.returncode != 0
    assert "passport.E001" in done.stderr and "PASSPORT_IAM_CHECK" in done.stderr
    assert "passport.E001" not in _check_deploy(PASSPORT_IAM_CHECK="true").stderr


def test_production_with_windows_passwords_under_aws_ssm_warns() -> None:
    done = _check_deploy(PASSPORT_HANDOFF_KMS_KEY="")
    assert done.returncode != 0
    assert "passport.W005" in done.stderr and "ReadOnlyAccess" in done.stderr
    # Naming AWS's own key is a choice made on purpose: no warning.
    assert "passport.W005" not in _check_deploy(PASSPORT_HANDOFF_KMS_KEY="alias/aws/ssm").stderr


@pytest.mark.parametrize(
    "value",
    ["passport-handoff", "alias/passport handoff", "alias/x;rm -rf /", "arn:aws:kms:us-east-1:1:key/k", "alias/\n"],
)
def test_a_handoff_key_that_names_no_kms_key_refuses_to_start(value: str) -> None:
    done = _check_deploy(deploy=False, PASSPORT_HANDOFF_KMS_KEY=value)
    assert done.returncode != 0
    assert "PASSPORT_HANDOFF_KMS_KEY" in done.stderr and "ImproperlyConfigured" in done.stderr


@pytest.mark.parametrize("passport_env", ["production", "development"])
def test_a_process_started_with_the_iam_gate_off_logs_a_warning(passport_env: str) -> None:
    # Every process (web, worker, beat, any manage.py command) sets Django up the same way.
    off = _check_deploy(deploy=False, PASSPORT_ENV=passport_env, PASSPORT_IAM_CHECK="false")
    warnings = [line for line in off.stderr.splitlines() if "WARNING" in line and "PASSPORT_IAM_CHECK is off" in line]
    assert len(warnings) == 1, off.stderr
    on = _check_deploy(deploy=False, PASSPORT_ENV=passport_env)
    assert on.returncode == 0, on.stderr
    assert "PASSPORT_IAM_CHECK" not in on.stderr


def test_each_finding_has_its_own_id(settings: Any, tmp_path: Path) -> None:
    settings.REDIS_URL = "redis://redis.internal:6379/0"
    settings.VENDOR_STATIC_FILES = {"vendor/": (str(tmp_path), ["missing.js"])}
    found = [message for message in run_checks(include_deployment_checks=True) if message.id.startswith("passport.")]
    redis = [message.id for message in found if "REDIS_URL" in message.msg]
    npm = [message.id for message in found if "missing.js" in message.msg]
    assert redis == ["passport.W001"] and len(npm) == 1
    assert npm[0] != "passport.W001"


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://localhost:8000", "is not an https:// address"),
        ("https://localhost", "names this host only (localhost)"),
        ("https://127.0.0.1:8443", "names this host only (localhost)"),
        ("passport.example.com", "is not an https:// address"),
    ],
)
def test_a_base_url_people_cannot_reach_is_an_error_in_production(base_url: str, expected: str) -> None:
    done = _check_deploy(PASSPORT_BASE_URL=base_url)
    assert done.returncode != 0 and "passport.E004" in done.stderr and expected in done.stderr, done.stderr
