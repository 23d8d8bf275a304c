"""What the tests of the request services run with: settings as PASSPORT_ENV=test has them, the
Celery queue replaced by a recorder, and the fake fleet with a fixed CA key.

None of these is autouse: a test module asks for them, usually all three, with
``pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")``; a test that
looks at what was queued or sent to the fleet asks for ``queued`` or ``fleet`` by name.
"""

from __future__ import annotations

from typing import Any

import pytest

from requests_app.services import provisioning
from tests.conftest import PROVISIONING_TASKS
from tests.fakes.fleet import FakeFleet
from workers import tasks

CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb0Ik1Q5lmqk7cCc8DSK7zS4Tb5lYq4TIpQKQd2SKlR passport-ca"


@pytest.fixture
def service_settings(settings: Any) -> None:
    """What PASSPORT_ENV=test sets, so these tests pass however they are started."""
    # The personas get passwords; PBKDF2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Asking AWS IAM about each request is requests_app.iam's rule, tested with it.
    settings.PASSPORT_IAM_CHECK = False


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record what would be sent to Celery instead of sending it."""
    sent: list[tuple[str, int]] = []
    for name in PROVISIONING_TASKS:
        monkeypatch.setattr(
            getattr(tasks, name), "delay", lambda object_id, _name=name: sent.append((_name, object_id))
        )
    return sent


@pytest.fixture
def fleet(fake_fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch) -> FakeFleet:
    # Making real CA keys (RSA among them) for every test would dominate the run time; the one
    # test about the CA lines (in test_provisioning) uses the real keys.
    monkeypatch.setattr(provisioning.common, "ca_trusted_public_keys", lambda: [CA_KEY])
    return fake_fleet
