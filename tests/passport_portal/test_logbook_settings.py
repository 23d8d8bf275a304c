"""Production refuses to start without the Logbook's key, signing key and evidence bucket."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import logbook_key_pins_parse
from tests.passport_portal.production_env import ROOT, start_production

PROBE = "import passport_portal.settings as s; print(sorted(s.PASSPORT_LOGBOOK_KEYS), s.PASSPORT_LOGBOOK_KEY_ID)"


def _start(**changes: str | None) -> subprocess.CompletedProcess[str]:
    return start_production(PROBE, **changes)


def test_production_starts_with_all_three() -> None:
    started = _start()
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["['logbook-1']", "logbook-1"]


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"PASSPORT_LOGBOOK_KEY": None}, "PASSPORT_LOGBOOK_KEY is required"),
        ({"PASSPORT_LOGBOOK_KEY": "short"}, "PASSPORT_LOGBOOK_KEY must be a random secret of at least 32"),
        ({"PASSPORT_LOGBOOK_SIGNING_KEY": None}, "PASSPORT_LOGBOOK_SIGNING_KEY is required"),
        ({"PASSPORT_EVIDENCE_BUCKET": None}, "PASSPORT_EVIDENCE_BUCKET is required"),
        ({"PASSPORT_LOGBOOK_OLD_KEYS": "no-equals-sign"}, "PASSPORT_LOGBOOK_OLD_KEYS is a comma-separated list"),
        ({"PASSPORT_LOGBOOK_KEY_ID": "legacy-sha256"}, "Logbook key id 'legacy-sha256'"),
    ],
    ids=["no-key", "short-key", "no-signing-key", "no-bucket", "bad-old-keys", "legacy-id"],
)
def test_production_refuses_to_start(changes: dict[str, str | None], said: str) -> None:
    started = _start(**changes)
    assert started.returncode != 0
    assert said in started.stderr


def test_production_refuses_the_demo_signing_key() -> None:
    demo_key = subprocess.run(
        [
            sys.executable,
            "-c",
            "import passport_portal.settings.logbook as s; print(s._DEV_LOGBOOK_SIGNING_KEY, end='')",
        ],
        cwd=ROOT,
        env={**os.environ, "PASSPORT_ENV": "test"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    started = _start(PASSPORT_LOGBOOK_SIGNING_KEY=demo_key)
    assert started.returncode != 0
    assert "must be your own Ed25519 key" in started.stderr


DEMO_KEY_B64 = "MC4CAQAwBQYDK2VwBCIEIFOkGBoZbw++B0OA5Z3seImh+rjr+XZ4UeLFyRFzvlqR"
DEMO_PUBLIC_KEY = "Ps9UIfqxzs6ybhV/bxbPZ0Rj5N9QTC5mjNbgsYDih1o="  # base64 of its 32 raw bytes
OTHER_PUBLIC_KEY = "JXpj7YZx5HvSrMSlLFCp1Fa7JMRAYPS8gEApXyU9vtc="


@pytest.mark.parametrize(
    "pem",
    [
        f"-----BEGIN PRIVATE KEY-----\r\n{DEMO_KEY_B64}\r\n-----END PRIVATE KEY-----\r\n",
        f"-----BEGIN PRIVATE KEY-----\n{DEMO_KEY_B64[:32]}\n{DEMO_KEY_B64[32:]}\n-----END PRIVATE KEY-----\n",
        f"\n  -----BEGIN PRIVATE KEY-----\n{DEMO_KEY_B64}\n-----END PRIVATE KEY-----",
    ],
    ids=["crlf", "rewrapped", "indented"],
)
def test_production_refuses_the_demo_signing_key_however_its_pem_is_laid_out(pem: str) -> None:
    started = _start(PASSPORT_LOGBOOK_SIGNING_KEY=pem)
    assert started.returncode != 0, "production started with the demo's Logbook signing key"
    assert "must be your own Ed25519 key" in started.stderr


@pytest.mark.parametrize(
    "old", [DEMO_PUBLIC_KEY, f"{OTHER_PUBLIC_KEY}, {DEMO_PUBLIC_KEY}"], ids=["alone", "beside-another"]
)
def test_production_refuses_the_demo_public_key_among_the_old_signing_keys(old: str) -> None:
    """A checkpoint anyone can sign with the published demo key must never verify."""
    started = _start(PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS=old)
    assert started.returncode != 0, "production trusts checkpoints signed with the demo's key"
    assert "PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS" in started.stderr and "demo" in started.stderr


def test_production_keeps_old_signing_keys_of_its_own() -> None:
    probe = "import passport_portal.settings as s; print(s.PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS)"
    started = start_production(probe, PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS=OTHER_PUBLIC_KEY)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"[{OTHER_PUBLIC_KEY!r}]"


def test_old_keys_are_kept_beside_the_current_one() -> None:
    started = _start(PASSPORT_LOGBOOK_KEY_ID="logbook-2", PASSPORT_LOGBOOK_OLD_KEYS="logbook-1=" + "o" * 40)
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["['logbook-1',", "'logbook-2']", "logbook-2"]


def test_a_rotation_overlap_is_pinned_per_old_key() -> None:
    probe = "import passport_portal.settings as s; print(s.PASSPORT_LOGBOOK_OLD_KEYS_UNTIL)"
    started = start_production(
        probe,
        PASSPORT_LOGBOOK_KEY_ID="logbook-3",
        PASSPORT_LOGBOOK_OLD_KEYS="logbook-2=" + "t" * 40 + ",logbook-1=" + "o" * 40,
        PASSPORT_LOGBOOK_OLD_KEYS_UNTIL=" logbook-1 = 1234 ",
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "{'logbook-1': 1234}"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("logbook-1", "is not id=entry"),
        ("logbook-1=0", "is not id=entry"),
        ("logbook-1=-5", "is not id=entry"),
        ("logbook-1=12; rm -rf /", "is not id=entry"),
        ("logbook-1=\u0661\u0662", "is not id=entry"),  # Arabic-Indic digits: isdigit() yet no entry number
        ("logbook-1=3\nlogbook-1=4", "is not id=entry"),
        ("logbook-2=7", "'logbook-2' is not a key of PASSPORT_LOGBOOK_OLD_KEYS"),  # the current key
        ("'$(id)`\u202e=7", "is not a key of PASSPORT_LOGBOOK_OLD_KEYS"),
        ("logbook-1=7,logbook-1=9", "'logbook-1' is pinned twice"),
    ],
)
def test_a_pin_that_names_no_old_key_or_no_entry_is_refused(value: str, said: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        logbook_key_pins_parse(value, old_ids=["logbook-1"])
    assert said in str(refused.value)
    assert "\n" not in str(refused.value) and "\u202e" not in str(refused.value)  # repr'd, never raw
