"""Production settings started in a subprocess, for tests: the Logbook's secrets and the mail server
they require, and ``start_production`` with the rest of a working environment."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def secret_for_tests(name: str, length: int) -> str:
    """A fixed stand-in of ``length`` characters (at most 88) for one production secret: a value of its own
    for each name, of many different characters (production refuses a few repeated, and one value twice)."""
    return base64.b64encode(hashlib.sha512(name.encode()).digest()).decode()[:length]


PRODUCTION_LOGBOOK_ENV = {
    "PASSPORT_LOGBOOK_KEY": secret_for_tests("PASSPORT_LOGBOOK_KEY", 40),
    "PASSPORT_EVIDENCE_BUCKET": "passport-evidence-test",
    # A key made for these tests only (not the demo's, which production refuses).
    "PASSPORT_LOGBOOK_SIGNING_KEY": (
        "-----BEGIN PRIVATE KEY-----\n"
        "MC4CAQAwBQYDK2VwBCIEIMRy+/5ArDgw06RBA5DyFsJ73cKlhtK4ll+QtOz5Eo5w\n"
        "-----END PRIVATE KEY-----\n"
    ),
}

# Production sends mail through a server of its own; it refuses to start without one (and
# `check --deploy` warns of plain SMTP to it: passport.W006).
PRODUCTION_MAIL_ENV = {"PASSPORT_EMAIL_HOST": "smtp.example.test", "PASSPORT_EMAIL_USE_TLS": "true"}


def start_production(probe: str, **changes: str | None) -> subprocess.CompletedProcess[str]:
    """Run ``probe`` (Python) after importing production settings from a working environment with
    ``changes`` (a name to None removes it); none of this process's PASSPORT_ or DJANGO_ variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PASSPORT_", "DJANGO_"))}
    env.update(
        PASSPORT_ENV="production",
        PASSPORT_SECRET_KEY=secret_for_tests("PASSPORT_SECRET_KEY", 50),
        PASSPORT_USERNAME_KEY=secret_for_tests("PASSPORT_USERNAME_KEY", 32),
        PASSPORT_ALLOWED_HOSTS="passport.example.test",
        PASSPORT_CA_ENCRYPTION_KEY=secret_for_tests("PASSPORT_CA_ENCRYPTION_KEY", 40),
        DATABASE_URL="postgres://passport@db.invalid/passport",
        REDIS_URL="redis://redis.invalid:6379/0",
        **PRODUCTION_LOGBOOK_ENV,
        **PRODUCTION_MAIL_ENV,
    )
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
