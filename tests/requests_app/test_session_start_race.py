"""A session started in the instant its request ends does not outlive it.

``grant_start_session`` checks the request and grant, assumes the scoped role and calls
StartSession. If the request ends in between (completed, revoked) and removal has already
listed the instance's sessions, nothing else would ever end the new one: a forward to a port
that needs no OS user would keep working after the end. The interleaving is forced by letting
the ending and the removal run just before AWS's StartSession."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet.aws.sessions import SessionsMixin
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from tests.requests_app.test_forward_ports import FORWARD, Scene, make_scene
from tests.stack import Cloud

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(aws: Cloud, db: None, settings: Any) -> Scene:
    return make_scene(aws, settings)


def test_a_session_started_as_the_request_ends_is_ended_at_once_and_refused(
    scene: Scene, aws: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = Grant.objects.select_related("instance", "request__account", "request__requester").get(
        instance=scene.windows
    )
    real_start = SessionsMixin.start_session
    started: list[str] = []

    def start_session(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not started:
            # The other side, between the portal's checks and AWS's StartSession: the request
            # ends and removal lists the instance's sessions (none yet).
            services.access_request_complete(access_request=scene.request, actor=scene.alice)
            for grant_id in Grant.objects.filter(request=scene.request).values_list("pk", flat=True):
                services.grant_deprovision(grant_id=grant_id)
        answer = real_start(self, *args, **kwargs)
        started.append(answer["SessionId"])
        return answer

    monkeypatch.setattr(SessionsMixin, "start_session", start_session)

    with pytest.raises(RequestRuleError) as refused:
        services.grant_start_session(grant=grant, user=scene.alice, document=FORWARD, port=3389, via="cli")

    assert refused.value.code == "conflict"
    request = AccessRequest.objects.get(pk=scene.request.pk)
    assert request.status == RequestStatus.COMPLETED
    assert set(Grant.objects.filter(request=request).values_list("status", flat=True)) == {GrantStatus.REMOVED}
    assert not aws.devcloud.runtime.sessions.get(started[0]).active
    entries = LogbookEntry.objects.filter(request_id=request.pk, action__startswith="session.").order_by("pk")
    assert [entry.action for entry in entries] == ["session.started", "session.terminated"]
    ended = entries.last()
    assert ended is not None
    assert ended.detail["session_id"] == started[0] and ended.detail["reason"] == "the access ended as it started"


def test_a_session_started_while_the_request_stays_active_is_kept(scene: Scene, aws: Cloud) -> None:
    grant = Grant.objects.select_related("instance", "request__account", "request__requester").get(
        instance=scene.windows
    )
    answer = services.grant_start_session(grant=grant, user=scene.alice, document=FORWARD, port=3389, via="cli")
    try:
        assert aws.devcloud.runtime.sessions.get(answer["SessionId"]).active
        assert not LogbookEntry.objects.filter(action="session.terminated").exists()
    finally:
        from fleet import fleet_for

        fleet_for(scene.prod).terminate_session(answer["SessionId"], "us-east-1")
