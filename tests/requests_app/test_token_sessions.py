"""A Session Manager session the CLI started with its sign-in (`passport forward`, `connect` to Windows,
direct SSH) ends when that sign-in (its ``ApiToken``) is revoked, whether or not a CLI is still
watching: the revocation queues ``end_token_sessions`` once it commits, which ends the sessions that
token started (TerminateSession) and writes ``session.terminated`` with ``"reason": "cli sign-in
revoked"``, the token and why it was revoked. The person's other sign-ins' sessions, those started in
the browser's session, and those already over are left alone; a revocation whose task was lost is
found by the periodic run. A sign-in that merely expires (nothing revokes it) has its sessions
ended by that periodic run too (``"reason": "cli sign-in expired"``), and one that expires while AWS
starts a session has that session ended at once. Real devcloud throughout.

The whole path with a running `passport forward` and the worker is in tests/cli/test_forward_revoked.py."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import cli_tokens
from accounts.authentication import hash_token
from accounts.models import ApiToken, User
from audit.models import LogbookEntry
from fleet import fleet_for
from requests_app import services
from requests_app.models import Instance
from tests.requests_app.conftest import sessions_terminated
from tests.requests_app.test_forward_ports import FORWARD, Scene
from tests.stack import Cloud, ssm_session_active
from workers import tasks

pytestmark = pytest.mark.django_db

REVOKED = "cli sign-in revoked"


def _issue(user: User, name: str) -> tuple[ApiToken, str]:
    raw = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, token_hash=hash_token(raw), expires_at=timezone.now() + timedelta(hours=12)
    )
    return token, raw


def _start(scene: Scene, instance: Instance, *, raw: str | None) -> str:
    """A session to Remote Desktop's port, started through the API as the CLI does: with the bearer
    token ``raw``, or (None) in alice's browser session."""
    client = APIClient()
    if raw is None:
        client.force_authenticate(scene.alice)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post(
        f"/api/requests/{scene.request.pk}/grants/{instance.instance_id}/session/",
        {"document": FORWARD, "port": 3389},
        format="json",
    )
    assert response.status_code == 201, response.content
    return str(response.json()["session_id"])


@pytest.fixture
def token_endings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The ``end_token_sessions`` sends a revocation's commit queued, recorded instead of sent to Celery."""
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.end_token_sessions, "delay", lambda *args: sent.append(args))
    return sent


@dataclass
class TwoSignIns:
    laptop: ApiToken
    laptop_raw: str
    forward: str  # a session the laptop's sign-in started
    other_sign_in: str  # one the desktop's started, to the same host


@pytest.fixture
def two_sign_ins(devcloud_scene: Scene) -> TwoSignIns:
    """alice signed in on her laptop and her desktop, each with a session to Windows' Remote Desktop."""
    laptop, laptop_raw = _issue(devcloud_scene.alice, "laptop")
    _desktop, desktop_raw = _issue(devcloud_scene.alice, "desktop")
    return TwoSignIns(
        laptop=laptop,
        laptop_raw=laptop_raw,
        forward=_start(devcloud_scene, devcloud_scene.windows, raw=laptop_raw),
        other_sign_in=_start(devcloud_scene, devcloud_scene.windows, raw=desktop_raw),
    )


def _revoke(token: ApiToken, capture: Any) -> None:
    """A site admin revokes ``token``, and the revocation commits."""
    with capture(execute=True):
        assert cli_tokens.api_token_revoke(token=token, actor=None, reason=cli_tokens.RevokeReason.REVOKED_BY_ADMIN)


def test_revoking_a_sign_in_ends_the_sessions_it_started_and_no_other(
    devcloud_scene: Scene,
    aws: Cloud,
    two_sign_ins: TwoSignIns,
    token_endings: list[tuple[Any, ...]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    scene = devcloud_scene
    laptop, forward, other_sign_in = two_sign_ins.laptop, two_sign_ins.forward, two_sign_ins.other_sign_in
    browser = _start(scene, scene.windows, raw=None)
    # One the laptop started that is over already (the CLI stopped): nothing to end, nothing to write.
    over = _start(scene, scene.windows, raw=two_sign_ins.laptop_raw)
    fleet_for(scene.prod).terminate_session(over, "us-east-1")
    started = LogbookEntry.objects.get(action="session.started", detail__session_id=forward)
    assert started.detail["cli_token"] == laptop.pk  # the session's entry names the sign-in that started it

    _revoke(laptop, django_capture_on_commit_callbacks)
    assert token_endings == [([laptop.pk], [scene.alice.pk], "revoked_by_admin")]
    # No CLI is watching: the worker's task alone ends it.
    assert tasks.end_token_sessions(*token_endings[0]) == {"ended": [forward]}

    assert not ssm_session_active(aws, forward)
    assert ssm_session_active(aws, other_sign_in) and ssm_session_active(aws, browser)
    [ended] = sessions_terminated()
    assert ended.actor is None and ended.request_id == scene.request.pk
    assert ended.instance_ids.split() == [scene.windows.instance_id]
    assert ended.detail == {
        "session_id": forward,
        "port": 3389,
        "document": FORWARD,
        "via": "cli",
        "reason": REVOKED,
        "token": laptop.pk,
        "revoked": "revoked_by_admin",
    }
    # A second run, and the periodic one, find nothing left to end.
    assert tasks.end_token_sessions(*token_endings[0]) == {"ended": []}
    assert services.sessions_end_for_tokens().ended == []
    assert len(sessions_terminated()) == 1


def test_a_revocation_whose_task_was_lost_is_found_by_the_periodic_run(
    aws: Cloud, two_sign_ins: TwoSignIns, token_endings: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    laptop, forward, other_sign_in = two_sign_ins.laptop, two_sign_ins.forward, two_sign_ins.other_sign_in

    _revoke(laptop, django_capture_on_commit_callbacks)
    assert token_endings  # sent, and lost with the broker

    assert tasks.end_all_withdrawn_sessions() == 1
    assert not ssm_session_active(aws, forward) and ssm_session_active(aws, other_sign_in)
    [ended] = sessions_terminated()
    assert ended.detail["session_id"] == forward and ended.detail["reason"] == REVOKED
    # Why it was revoked, as its cli.token_revoked entry says (the lost task carried it).
    assert ended.detail["token"] == laptop.pk and ended.detail["revoked"] == "revoked_by_admin"


def test_a_password_change_ends_every_session_of_the_sign_ins_it_revokes(
    devcloud_scene: Scene, aws: Cloud, token_endings: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    """Revoked by the portal (``api_tokens_revoke_for_user``): all the person's sign-ins at once."""
    scene = devcloud_scene
    laptop, laptop_raw = _issue(scene.alice, "laptop")
    desktop, desktop_raw = _issue(scene.alice, "desktop")
    sessions = [_start(scene, scene.windows, raw=laptop_raw), _start(scene, scene.web, raw=desktop_raw)]
    with django_capture_on_commit_callbacks(execute=True):
        reason = cli_tokens.RevokeReason.PASSWORD_CHANGED
        assert cli_tokens.api_tokens_revoke_for_user(user_id=scene.alice.pk, actor=None, reason=reason) == 2

    assert token_endings == [([laptop.pk, desktop.pk], [scene.alice.pk], "password_changed")]
    assert sorted(tasks.end_token_sessions(*token_endings[0])["ended"]) == sorted(sessions)
    assert not any(ssm_session_active(aws, session_id) for session_id in sessions)
    assert {(entry.detail["token"], entry.detail["revoked"]) for entry in sessions_terminated()} == {
        (laptop.pk, "password_changed"),
        (desktop.pk, "password_changed"),
    }


EXPIRED = "cli sign-in expired"


def _expire(token: ApiToken) -> None:
    """The sign-in's end (its confirming session's end, or its lifetime) has passed; its row stays."""
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_a_session_a_sign_in_started_ends_once_the_sign_in_expires_and_no_other(
    devcloud_scene: Scene, aws: Cloud, two_sign_ins: TwoSignIns
) -> None:
    """Nothing revokes an expired sign-in: the periodic run finds it by its end and ends its sessions,
    which a CLI that does not stop by itself would otherwise hold until the request ends."""
    scene = devcloud_scene
    laptop, forward, other_sign_in = two_sign_ins.laptop, two_sign_ins.forward, two_sign_ins.other_sign_in
    browser = _start(scene, scene.windows, raw=None)
    assert tasks.end_all_withdrawn_sessions() == 0  # every sign-in still live: nothing ends

    _expire(laptop)
    assert tasks.end_all_withdrawn_sessions() == 1
    assert not ssm_session_active(aws, forward)
    assert ssm_session_active(aws, other_sign_in) and ssm_session_active(aws, browser)
    [ended] = sessions_terminated()
    assert ended.actor is None and ended.request_id == scene.request.pk
    assert ended.detail == {
        "session_id": forward,
        "port": 3389,
        "document": FORWARD,
        "via": "cli",
        "reason": EXPIRED,
        "token": laptop.pk,
        "expired_at": ApiToken.objects.get(pk=laptop.pk).expires_at.isoformat(),
    }
    # The request goes on, and a second run finds nothing left to end.
    scene.request.refresh_from_db()
    assert scene.request.status == "active"
    assert tasks.end_all_withdrawn_sessions() == 0
    assert len(sessions_terminated()) == 1


def test_an_expired_sign_ins_sessions_end_even_if_its_row_is_gone_before_the_run(
    devcloud_scene: Scene, aws: Cloud, two_sign_ins: TwoSignIns
) -> None:
    """The link from a session to its sign-in is its ``session.started`` entry, not the token's row: a
    row deleted after the token expired (the person's own, or a user deleted with it) still leaves
    its sessions to be ended."""
    _expire(two_sign_ins.laptop)
    ApiToken.objects.filter(pk=two_sign_ins.laptop.pk).delete()
    assert tasks.end_all_withdrawn_sessions() == 1
    assert not ssm_session_active(aws, two_sign_ins.forward)
    assert ssm_session_active(aws, two_sign_ins.other_sign_in)


def test_a_sign_in_that_expires_as_the_session_starts_is_refused_and_its_session_ended(
    devcloud_scene: Scene, aws: Cloud, start_raced: Callable[[Callable[[], None]], list[str]]
) -> None:
    """Its bearer was live when the API checked it; its end came while AWS started the session."""
    scene = devcloud_scene
    laptop, raw = _issue(scene.alice, "laptop")
    started = start_raced(lambda: _expire(laptop))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post(
        f"/api/requests/{scene.request.pk}/grants/{scene.windows.instance_id}/session/",
        {"document": FORWARD, "port": 3389},
        format="json",
    )
    assert response.status_code == 409, response.content
    assert "expired" in response.json()["detail"]
    [session_id] = started
    assert not ssm_session_active(aws, session_id)
    [ended] = sessions_terminated()
    assert ended.detail["session_id"] == session_id
    assert ended.detail["reason"] == EXPIRED and ended.detail["token"] == laptop.pk
