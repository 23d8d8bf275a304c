"""The IAM gate's re-check reaches the Session Manager sessions the CLI holds itself (``passport
forward``, ``connect`` to Windows): once alice's IAM policy refuses her a session on web-1, her open
forwards there end with TerminateSession, each on record as ``session.terminated`` with the reason
``iam_denied`` and the gate's refusal, while her forward to the Windows instance, which the gate still
allows, carries on. Two sessions of one person on one instance with one document are one gate call; a session the CLI
ended itself is neither ended again nor written down, and a second run finds nothing of web-1 left.
The sessions she started herself with the request's AWS credentials (`passport aws-credentials`), of which
the portal knows only what DescribeSessions says, are asked about and end likewise. Real devcloud (its IAM
simulator)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from audit.models import LogbookEntry
from requests_app.models import Grant
from ssmchannel.documents import SSH_DOCUMENT
from terminal.services import IAM_DENIED, open_sessions_iam_recheck
from tests.requests_app.test_forward_ports import Scene
from tests.requests_app.test_withdrawn_sessions import (  # noqa: F401
    FORWARD,
    KEPT,
    _start,
    aws_credentials_ssm,
    direct,
    own_session,
    scene,
)
from tests.stack import Cloud, account_admin_client, ssm_session_active

pytestmark = pytest.mark.django_db


def _no_sessions_on(instance_id: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Action": "ssm:StartSession", "Resource": f"arn:aws:ec2:*:*:instance/{instance_id}"}
        ],
    }


def test_direct_sessions_end_when_iam_now_refuses_their_person(scene: Scene, aws: Cloud, settings: Any) -> None:  # noqa: F811
    settings.PASSPORT_IAM_CHECK = True
    first, second = _start(scene, scene.web, KEPT), _start(scene, scene.web, KEPT)
    stopped = _start(scene, scene.web, KEPT)
    aws.devcloud.runtime.sessions.terminate(scene.prod.account_id, stopped)  # the CLI stopped by itself
    windows = _start(scene, scene.windows, 3389)
    web_grant = Grant.objects.get(instance=scene.web)
    windows_grant = Grant.objects.get(instance=scene.windows)

    iam = account_admin_client(aws, scene.prod.account_id, "iam")
    policy = json.dumps(_no_sessions_on(scene.web.instance_id))
    iam.put_user_policy(UserName="alice", PolicyName="NoWeb", PolicyDocument=policy)
    try:
        result = open_sessions_iam_recheck()
        # One gate call per person and grant: two for four sessions.
        assert result.asked == 2
        assert result.denied == [(scene.alice.pk, web_grant.pk)]
        assert not ssm_session_active(aws, first) and not ssm_session_active(aws, second)
        assert ssm_session_active(aws, windows), "the gate still allows her on the Windows instance"
        ended = list(LogbookEntry.objects.filter(action="session.terminated").order_by("id"))
        assert sorted(entry.detail["session_id"] for entry in ended) == sorted([first, second])
        for entry in ended:
            assert entry.detail["reason"] == IAM_DENIED
            assert entry.detail["refusal"]
            assert entry.detail["port"] == KEPT and entry.detail["via"] == "cli"
            assert "error" not in entry.detail
            assert entry.instance_ids.split() == [scene.web.instance_id]

        # Nothing of web-1 is open any more: the next run asks only about the Windows forward.
        again = open_sessions_iam_recheck(fresh=True)
        assert (again.asked, again.denied) == (1, [])
        assert LogbookEntry.objects.filter(action="session.terminated").count() == 2
        assert ssm_session_active(aws, windows)
        assert windows_grant.pk != web_grant.pk
    finally:
        iam.delete_user_policy(UserName="alice", PolicyName="NoWeb")


def test_no_direct_session_is_asked_about_when_the_gate_is_off(scene: Scene, aws: Cloud, settings: Any) -> None:  # noqa: F811
    settings.PASSPORT_IAM_CHECK = False
    session_id = _start(scene, scene.web, KEPT)
    result = open_sessions_iam_recheck()
    assert (result.asked, result.cached, result.denied) == (0, 0, [])
    assert ssm_session_active(aws, session_id)


def test_sessions_started_with_aws_credentials_end_when_iam_now_refuses_their_person(
    direct: Scene,  # noqa: F811
    aws: Cloud,
    settings: Any,
) -> None:
    settings.PASSPORT_IAM_CHECK = True
    ssm = aws_credentials_ssm(direct, aws)
    on_web, on_windows = own_session(ssm, direct.web, 22), own_session(ssm, direct.windows, 3389)
    web_grant = Grant.objects.get(instance=direct.web)

    iam = account_admin_client(aws, direct.prod.account_id, "iam")
    policy = json.dumps(_no_sessions_on(direct.web.instance_id))
    iam.put_user_policy(UserName="alice", PolicyName="NoWeb", PolicyDocument=policy)
    try:
        # A tag change on the Windows instance asks about hers there only: the gate allows it. A session
        # started with the credentials is asked about both documents, as the credentials were issued.
        tagged = open_sessions_iam_recheck(instance_ids=[direct.windows.pk], fresh=True)
        assert (tagged.asked, tagged.denied) == (2, [])
        assert ssm_session_active(aws, on_web) and ssm_session_active(aws, on_windows)

        result = open_sessions_iam_recheck(fresh=True)
        # Nothing of them passed the portal, yet each is asked about: one call per instance and document.
        assert result.asked == 4
        assert result.denied == [(direct.alice.pk, web_grant.pk)]
        assert not ssm_session_active(aws, on_web)
        assert ssm_session_active(aws, on_windows), "the gate still allows her on the Windows instance"
        (ended,) = LogbookEntry.objects.filter(action="session.terminated")
        assert ended.actor is None and ended.request_id == direct.request.pk
        assert ended.instance_ids.split() == [direct.web.instance_id]
        refusal = ended.detail.pop("refusal")
        assert refusal
        assert ended.detail == {
            "session_id": on_web,
            "document": FORWARD,
            "via": "aws-credentials",
            "reason": IAM_DENIED,
            "refused_documents": sorted([FORWARD, SSH_DOCUMENT]),
        }

        again = open_sessions_iam_recheck(fresh=True)
        assert (again.asked, again.denied) == (2, [])
        assert LogbookEntry.objects.filter(action="session.terminated").count() == 1
    finally:
        iam.delete_user_policy(UserName="alice", PolicyName="NoWeb")
