"""Session Manager sessions: StartSession, ResumeSession, TerminateSession, DescribeSessions."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from devcloud.server import DevCloud
from tests.devcloud.helpers import Aws


def test_a_session_is_recorded_for_the_stream_server(
    aws: Aws, cloud: DevCloud, manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    prod = aws.assume(manifest["accounts"][0]["role_arn"], session_name="alice-portal")
    web = next(i["id"] for i in manifest["instances"] if i["name"] == "web-1")
    monkeypatch.setattr(cloud, "stream_base_url", "ws://127.0.0.1:45999")

    started = prod.client("ssm").start_session(
        Target=web, DocumentName="AWS-StartSSHSession", Parameters={"portNumber": ["22"]}, Reason="INC-1"
    )

    session = cloud.runtime.sessions.get(started["SessionId"])
    assert session is not None
    assert started["SessionId"].startswith("alice-portal-")
    assert started["StreamUrl"] == f"ws://127.0.0.1:45999/v1/data-channel/{started['SessionId']}"
    assert (session.account_id, session.target, session.document_name) == ("111111111111", web, "AWS-StartSSHSession")
    assert session.parameters == {"portNumber": ["22"]}
    assert session.token_value == started["TokenValue"]
    assert session.owner == "arn:aws:sts::111111111111:assumed-role/PassportPortal/alice-portal"


def test_sessions_are_listed_per_account_and_end_when_terminated(aws: Aws, cloud: DevCloud) -> None:
    ssm = aws.client("ssm")
    target = aws.launch("session-target")
    session_id = ssm.start_session(Target=target)["SessionId"]

    active = ssm.describe_sessions(State="Active", Filters=[{"key": "Target", "value": target}])["Sessions"]
    resumed = ssm.resume_session(SessionId=session_id)
    ssm.terminate_session(SessionId=session_id)
    history = ssm.describe_sessions(State="History", Filters=[{"key": "SessionId", "value": session_id}])["Sessions"]
    still_active = ssm.describe_sessions(State="Active", Filters=[{"key": "Target", "value": target}])["Sessions"]

    assert [(s["SessionId"], s["Status"], s["DocumentName"]) for s in active] == [
        (session_id, "Connected", "SSM-SessionManagerRunShell")
    ]
    assert resumed["SessionId"] == session_id
    assert resumed["TokenValue"] == cloud.runtime.sessions.get(session_id).token_value
    assert [(s["Status"], "EndDate" in s) for s in history] == [("Terminated", True)]
    assert still_active == []
    assert cloud.runtime.sessions.get(session_id).terminated.is_set()
    with pytest.raises(ClientError) as gone:
        ssm.resume_session(SessionId=session_id)
    assert gone.value.response["Error"]["Code"] == "DoesNotExistException"


def test_another_account_cannot_see_or_end_a_session(aws: Aws, cloud: DevCloud, manifest: dict[str, Any]) -> None:
    session_id = aws.client("ssm").start_session(Target=aws.launch("mine"))["SessionId"]
    # Staging's administrator: even it cannot reach another account's session.
    staging = aws.assume(manifest["accounts"][1]["admin_role_arn"]).client("ssm")

    staging.terminate_session(SessionId=session_id)

    assert (
        staging.describe_sessions(State="Active", Filters=[{"key": "SessionId", "value": session_id}])["Sessions"] == []
    )
    assert cloud.runtime.sessions.get(session_id).status == "Connected"


@pytest.mark.parametrize("tags", [{"devcloud:ping-status": "ConnectionLost"}, {"devcloud:managed": "false"}])
def test_a_target_without_an_online_agent_is_not_connected(aws: Aws, tags: dict[str, str]) -> None:
    with pytest.raises(ClientError) as refused:
        aws.client("ssm").start_session(Target=aws.launch("unreachable", **tags))
    assert refused.value.response["Error"]["Code"] == "TargetNotConnected"


def test_unknown_targets_and_documents_are_refused(aws: Aws) -> None:
    ssm = aws.client("ssm")
    with pytest.raises(ClientError) as unknown_target:
        ssm.start_session(Target="i-0123456789abcdef0")
    with pytest.raises(ClientError) as unknown_document:
        ssm.start_session(Target=aws.launch("doc-target"), DocumentName="AWS-NoSuchSession")

    assert unknown_target.value.response["Error"]["Code"] == "TargetNotConnected"
    assert unknown_document.value.response["Error"]["Code"] == "InvalidDocument"
