"""Production refuses the demo's embedded secrets and trivial ones, for SECRET_KEY and the username
key as it does for the CA and Logbook keys: at least 32 characters, not the embedded value, not a
character or a few repeated, and not one value for two of them."""

from __future__ import annotations

import os
import secrets
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


KEYS = ["PASSPORT_SECRET_KEY", "PASSPORT_USERNAME_KEY", "PASSPORT_CA_ENCRYPTION_KEY", "PASSPORT_LOGBOOK_KEY"]


@pytest.mark.parametrize("name", KEYS)
@pytest.mark.parametrize(
    "value",
    ["a" * 64, "ab" * 32, "passwordpasswordpasswordpassword", "changeme" * 6],
    ids=["one-char", "two-chars", "password", "changeme"],
)
def test_production_refuses_a_key_of_a_few_repeated_characters(name: str, value: str) -> None:
    started = _start(**{name: value})
    assert started.returncode != 0, f"production started with {name}={value!r}"
    assert f"{name} has only {len(set(value))} different characters" in started.stderr
    assert value not in started.stderr


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("PASSPORT_SECRET_KEY", "PASSPORT_CA_ENCRYPTION_KEY"),
        ("PASSPORT_USERNAME_KEY", "PASSPORT_LOGBOOK_KEY"),
        ("PASSPORT_SECRET_KEY", "PASSPORT_LOGBOOK_KEY"),
    ],
)
def test_production_refuses_one_value_for_two_keys(first: str, second: str, tmp_path: Path) -> None:
    shared = secrets.token_urlsafe(48)
    key_file = tmp_path / "shared"
    key_file.write_text(shared + "\n")  # one secret file named twice
    started = _start(**{first: shared, second: None, f"{second}_FILE": str(key_file)})
    assert started.returncode != 0, f"production started with {first} and {second} alike"
    assert f"{first} and {second} are the same value" in started.stderr or (
        f"{second} and {first} are the same value" in started.stderr
    )
    assert shared not in started.stderr


@pytest.mark.parametrize(
    "make", [lambda: secrets.token_hex(16), lambda: secrets.token_hex(32), lambda: secrets.token_urlsafe(32)]
)
def test_production_takes_keys_as_openssl_rand_makes_them(make: object) -> None:
    assert callable(make)
    started = _start(**{name: make() for name in KEYS})
    assert started.returncode == 0, started.stderr
