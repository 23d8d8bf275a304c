"""The demo runs on SQLite (the embedded default): its scheduler must expire requests there too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A due active request (no grants: nothing to remove), then the sweep as beat runs it.
SWEEP = """
import django
django.setup()
from datetime import timedelta
from django.utils import timezone
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.factories import make_account, make_user

due = AccessRequest.objects.create(
    requester=make_user("alice"), account=make_account(), reason="demo", status=RequestStatus.ACTIVE,
    activated_at=timezone.now() - timedelta(hours=2), expires_at=timezone.now() - timedelta(minutes=1),
)
claimed = services.access_requests_claim_due()
expired = services.access_requests_expire(request_ids=claimed)
due.refresh_from_db()
print(claimed == [due.pk], expired, due.status)
"""


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    database = tmp_path_factory.mktemp("sqlite") / "passport.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PASSPORT_ENV": "test"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    return env


def test_the_expiry_sweep_claims_and_expires_on_sqlite(demo_env: dict[str, str]) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SWEEP],
        cwd=ROOT,
        env={**demo_env, "DJANGO_SETTINGS_MODULE": "passport_portal.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    claimed_it, expired, status = run.stdout.split()
    assert claimed_it == "True"
    assert expired == "1"
    assert status != "active"
