"""scripts/demo promises SQLite, no Redis and development settings, and loads its demo people (a site
admin with a published password) there. A shell with a real installation's environment (`set -a;
. passport.env`) must not reach its database, Redis or secrets through the demo: the settings read
NAME_FILE before NAME (passport_portal.env.env_str), so the demo clears both, PASSPORT_ENV and every
PASSPORT_*_FILE, before it runs anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import json, passport_portal.settings as s;"
    "print(json.dumps([s.DATABASES['default']['ENGINE'], s.REDIS_URL, s.PASSPORT_ENV,"
    " s.SECRET_KEY.startswith('dev-only'), s.PASSPORT_CA_ENCRYPTION_KEY.startswith('dev-only')]))"
)


def _demo_clears(env: dict[str, str]) -> list[object]:
    """The settings the demo's commands get from ``env``: the script's own `unset` lines, then the probe."""
    lines = [line for line in (ROOT / "scripts" / "demo").read_text().splitlines() if line.startswith("unset ")]
    assert lines, "scripts/demo clears the environment with `unset`"
    script = "set -euo pipefail\n" + "\n".join(lines) + '\nexec "$0" -c "$1"\n'
    done = subprocess.run(
        ["bash", "-c", script, sys.executable, PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_demo_never_reaches_an_installation_named_by_files(tmp_path: Path) -> None:
    def secret(name: str, value: str) -> str:
        path = tmp_path / name
        path.write_text(value + "\n")
        return str(path)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PASSPORT_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(
        PASSPORT_VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://x@elsewhere/x",
        DATABASE_URL_FILE=secret("database-url", "postgres://passport:pw@db.internal:5432/passport"),
        REDIS_URL_FILE=secret("redis-url", "rediss://passport:pw@redis.internal:6380/0"),
        PASSPORT_ENV_FILE=secret("env", "test"),
        PASSPORT_SECRET_KEY_FILE=secret("secret-key", "k3Yq9vLx2Bz8Wm4Rt6Hn1Pc7Jd5Gf0Sa-installation"),
        PASSPORT_CA_ENCRYPTION_KEY_FILE=secret("ca-key", "Zr8Nw2Qe5Ty7Ui1Op3As6Df9Gh4Jk0Lm-installation"),
    )
    assert _demo_clears(env) == ["django.db.backends.sqlite3", "", "development", True, True]


def test_the_demo_runs_as_development_whatever_passport_env_says(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PASSPORT_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(PASSPORT_VAR_DIR=str(tmp_path), PASSPORT_ENV="test")  # test: the IAM gate off, among others
    assert _demo_clears(env)[2] == "development"
