"""A session to an instance whose SSM agent is gone (v1.2.0: "Fixed Passport crash when tunneling
if the SSM agent was missing on the target instance"): the portal's inventory still says Online,
devcloud's Systems Manager answers StartSession with TargetNotConnected, as AWS does."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal.models import SessionSlot, TerminalSession
from tests.requests_app.test_forward_ports import FORWARD, SSH, Scene, _end, _start, make_scene
from tests.stack import Cloud, agent_gone


@pytest.fixture
def scene(aws: Cloud, db: None, settings: Any) -> Scene:
    return make_scene(aws, settings)


@pytest.mark.parametrize(("document", "port"), [(SSH, 22), (FORWARD, 3389), (FORWARD, None)])
def test_a_session_to_an_instance_whose_agent_is_gone_is_refused(
    scene: Scene, aws: Cloud, document: str, port: int | None
) -> None:
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    with agent_gone(aws, scene.prod.account_id, "web-1"):
        response = _start(scene, scene.web, document, port)

    assert response.status_code == 502, response.content
    body = response.json()
    assert "Systems Manager could not start a session" in body["detail"] and "not connected" in body["detail"]
    # Nothing was started, so nothing is on record as started or left open.
    assert aws.devcloud.runtime.sessions.sessions(scene.prod.account_id, "us-east-1", active=True) == []
    assert not LogbookEntry.objects.filter(action="session.started").exists()
    failed = LogbookEntry.objects.filter(action="session.start_failed").latest("pk")
    assert failed.detail["port"] == (port or 22) and "not connected" in failed.detail["error"].lower()
    assert not TerminalSession.objects.exists() and not SessionSlot.objects.exists()

    # Once the agent is back, the same request starts one: the refusal held nothing.
    started = _start(scene, scene.web, document, port)
    assert started.status_code == 201, started.content
    _end(scene, started)
