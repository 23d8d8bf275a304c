"""Production refuses the demo's embedded secrets and trivial ones, for SECRET_KEY and the username
key as it does for the CA and Logbook keys: at least 32 characters and not the embedded value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.passport_portal.production_env import ROOT, start_production

PROBE = "import passport_portal.settings as s; print(len(s.SECRET_KEY), len(s.PASSPORT_USERNAME_KEY))"
DEMO_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production-0123456789"
DEMO_USERNAME_KEY = "dev-username-key"


def _start(**changes: str | None) -> subprocess.CompletedProcess[str]:
    return start_production(PROBE, **changes)


def test_production_starts_with_real_secrets() -> None:
    started = _start()
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["50", "32"]


@pytest.mark.parametrize("value", [DEMO_SECRET_KEY, "x", "", "s" * 31], ids=["demo", "one-char", "empty", "31-chars"])
def test_production_refuses_a_demo_or_weak_secret_key(value: str) -> None:
    started = _start(PASSPORT_SECRET_KEY=value)
    assert started.returncode != 0, f"production started with PASSPORT_SECRET_KEY={value!r}"
    assert "PASSPORT_SECRET_KEY must be a random secret of at least 32 characters" in started.stderr
    if len(value) > 8:
        assert value not in started.stderr  # the refusal names the variable, never the value


@pytest.mark.parametrize(
    "value", [DEMO_USERNAME_KEY, "", "check", "u" * 31], ids=["demo", "empty", "short", "31-chars"]
)
def test_production_refuses_a_demo_or_weak_username_key(value: str) -> None:
    started = _start(PASSPORT_USERNAME_KEY=value)
    assert started.returncode != 0, f"production started with PASSPORT_USERNAME_KEY={value!r}"
    assert "PASSPORT_USERNAME_KEY must be a random secret of at least 32 characters" in started.stderr


def test_production_refuses_an_empty_username_key_file(tmp_path: Path) -> None:
    empty = tmp_path / "username-key"
    empty.write_text("\n")
    started = _start(PASSPORT_USERNAME_KEY=None, PASSPORT_USERNAME_KEY_FILE=str(empty))
    assert started.returncode != 0, "production started with an empty PASSPORT_USERNAME_KEY_FILE"
    assert "PASSPORT_USERNAME_KEY must be a random secret of at least 32 characters" in started.stderr


def test_production_refuses_the_demo_secret_key_from_a_file(tmp_path: Path) -> None:
    demo = tmp_path / "secret-key"
    demo.write_text(DEMO_SECRET_KEY + "\n")
    started = _start(PASSPORT_SECRET_KEY=None, PASSPORT_SECRET_KEY_FILE=str(demo))
    assert started.returncode != 0, "production started with the demo's SECRET_KEY from a file"


def test_the_demo_and_the_tests_keep_their_embedded_keys() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PASSPORT_", "DJANGO_"))}
    for passport_env in ("development", "test"):
        started = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=ROOT,
            env={**env, "PASSPORT_ENV": passport_env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert started.returncode == 0, started.stderr
        assert started.stdout.split() == [str(len(DEMO_SECRET_KEY)), str(len(DEMO_USERNAME_KEY))]
