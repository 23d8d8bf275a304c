"""What the tests of the request services run with: settings as PASSPORT_ENV=test has them, the
Celery queue replaced by a recorder, and the fake fleet with a fixed CA key.

None of these is autouse: a test module asks for them, usually all three, with
``pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")``; a test that
looks at what was queued or sent to the fleet asks for ``queued`` or ``fleet`` by name.

For the tests of the sessions an account's change ends, on real devcloud: ``devcloud_scene``,
``queued_endings``, ``save_account`` and ``start_raced``; and the entries of the sessions ended,
``sessions_terminated``. What the Logbook says of a request, in order: ``request_actions``.
The clock stopped at test_provisioning's ``T0``, for the tests to move on: ``frozen``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet.aws.sessions import SessionsMixin
from requests_app.services import provisioning
from tests.conftest import PROVISIONING_TASKS
from tests.fakes.fleet import FakeFleet
from tests.requests_app.test_forward_ports import Scene, make_scene
from tests.requests_app.test_provisioning import T0
from tests.stack import Cloud
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
def frozen(time_machine: Any) -> Any:
    """The clock stopped at ``T0``; the test moves it on (``shift``, ``move_to``)."""
    time_machine.move_to(T0, tick=False)
    return time_machine


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
    monkeypatch.setattr(provisioning.host_lines, "ca_trusted_public_keys", lambda: [CA_KEY])
    return fake_fleet


@pytest.fixture
def devcloud_scene(aws: Cloud, db: None, settings: Any) -> Iterator[Scene]:
    """``make_scene``'s active request on devcloud's Acme Production; what the test left open there
    ends after it (devcloud outlives the test: nothing it started stays open for the next one)."""
    scene = make_scene(aws, settings)
    yield scene
    sessions = aws.devcloud.runtime.sessions
    for session in sessions.sessions(scene.prod.account_id, "us-east-1", active=True):
        sessions.terminate(scene.prod.account_id, session["SessionId"])


def request_actions(request_id: int) -> list[str]:
    """The actions of the Logbook's entries about this request, oldest first."""
    return list(LogbookEntry.objects.filter(request_id=request_id).order_by("id").values_list("action", flat=True))


def sessions_terminated() -> list[LogbookEntry]:
    """The ``session.terminated`` entries, oldest first."""
    return list(LogbookEntry.objects.filter(action="session.terminated").order_by("id"))


@pytest.fixture
def queued_endings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The accounts ``end_withdrawn_sessions`` was queued for, recorded instead of sent to Celery."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.end_withdrawn_sessions, "delay", sent.append)
    return sent


@pytest.fixture
def save_account(queued_endings: list[int], django_capture_on_commit_callbacks: Any) -> Callable[..., list[int]]:
    """``save_account(account, **fields)``: the account's fields changed and saved with the model's
    save, its on-commit callbacks run; returns the accounts that save queued ``end_withdrawn_sessions`` for."""

    def save(account: AwsAccount, **fields: Any) -> list[int]:
        stored = AwsAccount.objects.get(pk=account.pk)
        for name, value in fields.items():
            setattr(stored, name, value)
        with django_capture_on_commit_callbacks(execute=True):
            stored.save()
        sent = list(queued_endings)
        queued_endings.clear()
        return sent

    return save


@pytest.fixture
def start_raced(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], list[str]]:
    """``start_raced(change)``: the next session the portal starts meets ``change``, made between the
    portal's checks and AWS's StartSession (the other side of the race); returns the ids AWS started."""
    real_start = SessionsMixin.start_session
    started: list[str] = []

    def race(change: Callable[[], None]) -> list[str]:
        def start_session(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not started:
                change()
            answer = real_start(self, *args, **kwargs)
            started.append(answer["SessionId"])
            return answer

        monkeypatch.setattr(SessionsMixin, "start_session", start_session)
        return started

    return race
