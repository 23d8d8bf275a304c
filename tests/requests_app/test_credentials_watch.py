"""AWS credentials handed out before an account became moderated (or its CLI sessions recorded) are
not recalled: STS cannot revoke them, and they last up to ``PASSPORT_SCOPED_CREDENTIALS_SECONDS``
(15 minutes). The switch's own run of ``end_withdrawn_sessions`` ends the sessions open then; a
session those credentials start afterwards is ended by ``end_credential_sessions``, which beat sends
every 30 s and which looks only at the accounts that need it: moderated or recorded, with an
active request whose credentials have not expired. Real devcloud throughout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet.aws.sessions import SessionsMixin
from requests_app import services
from requests_app.models import AccessRequest
from requests_app.services.provisioning.sessions import CREDENTIALS_MARGIN
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.requests_app.test_forward_ports import SSH, Scene
from tests.requests_app.test_withdrawn_sessions import aws_credentials_ssm, own_session
from tests.stack import Cloud, ssm_session_active
from workers import tasks

pytestmark = pytest.mark.django_db

SWITCHES = {
    "moderated": ({"cli_sessions": "record", "require_session_join": "on"}, "moderation on"),
    "recorded": ({"cli_sessions": "record"}, "the account's CLI sessions are now recorded"),
}


@pytest.fixture
def scene(devcloud_scene: Scene) -> Scene:
    """The account as it is when the credentials are handed out: direct, not moderated."""
    AwsAccount.objects.filter(pk=devcloud_scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    devcloud_scene.prod.refresh_from_db()
    return devcloud_scene


def _switch(scene: Scene, fields: dict[str, str], queued_endings: list[int], capture: Any) -> None:
    """A site admin's save in the admin, then the run of ``end_withdrawn_sessions`` it queued."""
    client, _ = superuser_client()
    url = f"/admin/accounts/awsaccount/{scene.prod.pk}/change/"
    with capture(execute=True):
        post_ok(client, url, form_data(client, url, **fields))
    assert set(queued_endings) == {scene.prod.pk}  # once per change announced
    tasks.end_withdrawn_sessions(scene.prod.pk)


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_a_session_the_credentials_start_after_the_switch_is_ended_by_the_frequent_sweep(
    scene: Scene,
    aws: Cloud,
    switch: str,
    queued_endings: list[int],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    fields, reason = SWITCHES[switch]
    ssm = aws_credentials_ssm(scene, aws)  # `passport aws-credentials` while the account was direct
    first = own_session(ssm, scene.web, 22, document=SSH)
    _switch(scene, fields, queued_endings, django_capture_on_commit_callbacks)
    assert not ssm_session_active(aws, first)  # what was open at the switch ended with its run

    # The credentials are not recalled: they start another session, which the sweep ends.
    second = own_session(ssm, scene.web, 22, document=SSH)
    assert ssm_session_active(aws, second)
    assert tasks.end_credential_sessions() == 1
    assert not ssm_session_active(aws, second)
    ended = LogbookEntry.objects.filter(action="session.terminated", detail__session_id=second).get()
    assert ended.detail == {"session_id": second, "document": SSH, "via": "aws-credentials", "reason": reason}
    assert tasks.end_credential_sessions() == 0

    entry = settings.CELERY_BEAT_SCHEDULE["end-credential-sessions"]
    assert entry["task"] == tasks.end_credential_sessions.name
    assert entry["schedule"].run_every <= timedelta(seconds=30)
    route = settings.CELERY_TASK_ROUTES[tasks.end_credential_sessions.name]
    assert route == settings.CELERY_TASK_ROUTES[tasks.end_withdrawn_sessions.name]
    assert route == {"queue": settings.PASSPORT_REVOCATION_QUEUE}


@pytest.fixture
def aws_asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the sweep asked: each account it ran the ending for, and each DescribeSessions."""
    asked: list[str] = []
    real_end = services.sessions_end_withdrawn
    real_list = SessionsMixin.active_sessions

    def sessions_end_withdrawn(*, account_id: int) -> Any:
        asked.append(f"account {account_id}")
        return real_end(account_id=account_id)

    def active_sessions(self: Any, instance_id: str, region: str) -> list[dict[str, str]]:
        asked.append(instance_id)
        return real_list(self, instance_id, region)

    monkeypatch.setattr(services, "sessions_end_withdrawn", sessions_end_withdrawn)
    monkeypatch.setattr(SessionsMixin, "active_sessions", active_sessions)
    return asked


def test_the_sweep_does_nothing_when_no_account_needs_it(
    scene: Scene,
    aws: Cloud,
    aws_asked: list[str],
    django_assert_num_queries: Any,
) -> None:
    # No credentials handed out anywhere: one query, nothing asked of AWS.
    with django_assert_num_queries(1):
        assert tasks.end_credential_sessions() == 0
    # Unexpired credentials on a direct account: it ends nothing there (the 5-minute run sees to the rest).
    ssm = aws_credentials_ssm(scene, aws)
    own = own_session(ssm, scene.web, 22, document=SSH)
    with django_assert_num_queries(1):
        assert tasks.end_credential_sessions() == 0
    # Moderated, but the credentials have expired (past the margin): none of them can start a session.
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions="record", require_session_join=True)
    past = timezone.now() - CREDENTIALS_MARGIN - timedelta(seconds=1)
    AccessRequest.objects.filter(pk=scene.request.pk).update(aws_credentials_until=past)
    with django_assert_num_queries(1):
        assert tasks.end_credential_sessions() == 0
    # A request no longer active is removal's to watch (provisioning.sessions), not this sweep's.
    future = timezone.now() + timedelta(minutes=10)
    AccessRequest.objects.filter(pk=scene.request.pk).update(aws_credentials_until=future, status="completing")
    with django_assert_num_queries(1):
        assert tasks.end_credential_sessions() == 0
    assert aws_asked == []
    assert ssm_session_active(aws, own)
    # Unexpired again on the active request of the moderated account: now it looks there.
    AccessRequest.objects.filter(pk=scene.request.pk).update(status="active")
    assert tasks.end_credential_sessions() == 1
    assert aws_asked[0] == f"account {scene.prod.pk}" and scene.web.instance_id in aws_asked
    assert not ssm_session_active(aws, own)
