"""The IAM gate's re-check asks about the session document each open session actually uses. A person's
"no tunnels" (a Deny of StartSession on AWS-StartPortForwardingSession) added while a `passport
forward` to a Linux instance is open ends that forward at the next re-check, as a new one is refused,
while her SSH session there (AWS-StartSSHSession, which the gate still allows) carries on; a forward
started with the request's AWS credentials ends likewise (those sessions are asked about both
documents, as the credentials are when issued). On a Windows grant an SSH session is asked about the
SSH document, not only the forwarding one. An answer kept for one document never answers for
another. Real devcloud (its IAM simulator) and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app.models import Grant
from ssmchannel.documents import PORT_FORWARDING_DOCUMENT, SSH_DOCUMENT
from terminal.models import SessionSlot
from terminal.services import IAM_DENIED, open_sessions_iam_recheck
from tests.requests_app.test_forward_ports import Scene
from tests.requests_app.test_withdrawn_sessions import (  # noqa: F401
    KEPT,
    _start,
    aws_credentials_ssm,
    direct,
    own_session,
    scene,
)
from tests.stack import Cloud, account_admin_client, ssm_session_active

pytestmark = pytest.mark.django_db


def _deny(document: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Deny", "Action": "ssm:StartSession", "Resource": f"arn:aws:ssm:*::document/{document}"}
            ],
        }
    )


@pytest.fixture
def deny_document(aws: Cloud, devcloud_scene: Scene) -> Iterator[Any]:
    """``deny_document(name)`` puts a Deny of StartSession on that document in alice's IAM policy
    (removed after the test)."""
    iam = account_admin_client(aws, devcloud_scene.prod.account_id, "iam")
    put: list[str] = []

    def deny(document: str) -> None:
        iam.put_user_policy(UserName="alice", PolicyName="NoDocument", PolicyDocument=_deny(document))
        put.append(document)

    yield deny
    if put:
        iam.delete_user_policy(UserName="alice", PolicyName="NoDocument")


def _ended() -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action="session.terminated").order_by("id"))


def test_an_open_forward_ends_when_tunnels_are_denied_and_ssh_carries_on(
    direct: Scene,  # noqa: F811
    aws: Cloud,
    settings: Any,
    deny_document: Any,
) -> None:
    settings.PASSPORT_IAM_CHECK = True
    forward = _start(direct, direct.web, KEPT)  # AWS-StartPortForwardingSession on a Linux instance
    ssh = _start(direct, direct.web, 22, document=SSH_DOCUMENT)  # SSH on a direct account
    web_grant = Grant.objects.get(instance=direct.web)
    deny_document(PORT_FORWARDING_DOCUMENT)
    with pytest.raises(RequestRuleError):
        _start(direct, direct.web, KEPT)  # a new forward is refused by the gate now ...

    result = open_sessions_iam_recheck(fresh=True)  # ... so the open one ends
    assert result.denied == [(direct.alice.pk, web_grant.pk)], result
    assert result.asked == 2  # one question per document her sessions there use
    assert not ssm_session_active(aws, forward), "the tunnel her IAM policy now denies stays open"
    assert ssm_session_active(aws, ssh), "the gate still allows her SSH session"
    (ended,) = _ended()
    assert ended.detail["session_id"] == forward and ended.detail["reason"] == IAM_DENIED
    assert ended.detail["document"] == PORT_FORWARDING_DOCUMENT
    assert ended.detail["refused_documents"] == [PORT_FORWARDING_DOCUMENT]
    assert PORT_FORWARDING_DOCUMENT in ended.detail["refusal"]


def test_a_forward_started_with_aws_credentials_ends_when_tunnels_are_denied(
    direct: Scene,  # noqa: F811
    aws: Cloud,
    settings: Any,
    deny_document: Any,
) -> None:
    settings.PASSPORT_IAM_CHECK = True
    tunnel = own_session(aws_credentials_ssm(direct, aws), direct.web, 22)  # the forwarding document
    web_grant = Grant.objects.get(instance=direct.web)
    deny_document(PORT_FORWARDING_DOCUMENT)

    result = open_sessions_iam_recheck(fresh=True)
    assert result.denied == [(direct.alice.pk, web_grant.pk)], result
    assert not ssm_session_active(aws, tunnel), "the credentials' tunnel her IAM policy now denies stays open"
    (ended,) = _ended()
    assert (ended.detail["session_id"], ended.detail["via"]) == (tunnel, "aws-credentials")
    assert ended.detail["refused_documents"] == [PORT_FORWARDING_DOCUMENT]


def test_ssh_to_a_windows_instance_is_asked_about_the_ssh_document(
    direct: Scene,  # noqa: F811
    aws: Cloud,
    settings: Any,
    deny_document: Any,
) -> None:
    settings.PASSPORT_IAM_CHECK = True
    ssh = _start(direct, direct.windows, 22, document=SSH_DOCUMENT)
    remote_desktop = _start(direct, direct.windows, 3389)  # the forwarding document
    windows_grant = Grant.objects.get(instance=direct.windows)
    deny_document(SSH_DOCUMENT)

    result = open_sessions_iam_recheck(fresh=True)
    assert result.denied == [(direct.alice.pk, windows_grant.pk)], result
    assert not ssm_session_active(aws, ssh), "the SSH session her IAM policy now denies stays open"
    assert ssm_session_active(aws, remote_desktop), "the gate still allows her forward to Remote Desktop"
    (ended,) = _ended()
    assert (ended.detail["session_id"], ended.detail["document"]) == (ssh, SSH_DOCUMENT)
    assert ended.detail["refused_documents"] == [SSH_DOCUMENT]


def test_an_answer_kept_for_ssh_does_not_answer_for_a_forward(
    scene: Scene,  # noqa: F811
    aws: Cloud,
    settings: Any,
    deny_document: Any,
) -> None:
    settings.PASSPORT_IAM_CHECK = True
    web_grant = Grant.objects.get(instance=scene.web)
    SessionSlot.objects.create(user=scene.alice, grant=web_grant)  # a CLI proxy connection: SSH
    first = open_sessions_iam_recheck()
    assert (first.asked, first.cached, first.denied) == (1, 0, [])  # SSH allowed, kept a while

    forward = _start(scene, scene.web, KEPT)
    deny_document(PORT_FORWARDING_DOCUMENT)
    result = open_sessions_iam_recheck()  # a period, not a tag change: the cache is read
    assert (result.asked, result.cached) == (1, 1), "the forward was answered by the SSH answer kept"
    assert result.denied == [(scene.alice.pk, web_grant.pk)]
    assert not ssm_session_active(aws, forward)
    assert [entry.detail["session_id"] for entry in _ended()] == [forward]
