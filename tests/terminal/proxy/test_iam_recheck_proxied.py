"""A tag an IAM Deny conditions on, put on the instance while a CLI session runs through the recording
proxy: the inventory sync sees the tag change, the IAM gate is asked again at once, and the proxy ends
the session it now refuses, telling the client why (its stderr), on record as ``session.terminated``
(``iam_denied``, ``cli``). Real daphne (its IAM gate on), worker, devcloud, `passport` CLI and OpenSSH
(tests/terminal/proxy/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from core import dispatch
from requests_app.services import inventory_sync
from terminal import services
from terminal.proxy.session import as_session_reason
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied, echoing_command
from tests.terminal.test_iam_recheck import NO_QUARANTINED, RecheckInThisProcess, alice_policy, quarantine

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

__all__ = ["alice_policy", "quarantine"]  # fixtures of the browser terminal's tests, used here too


@pytest.fixture
def daphne_settings() -> dict[str, str]:
    """The proxy asks the IAM gate before the connection, as in production."""
    return {"PASSPORT_IAM_CHECK": "true"}


def test_a_tag_an_iam_deny_conditions_on_ends_the_proxied_cli_session(
    proxied: Proxied, prod: AwsAccount, settings: Any, monkeypatch: Any, alice_policy: Any, quarantine: Any
) -> None:
    settings.PASSPORT_IAM_CHECK = True
    monkeypatch.setitem(dispatch._tasks, "iam_recheck_sessions", RecheckInThisProcess())
    alice_policy(NO_QUARANTINED)  # web-1 carries no such tag yet: her session starts
    with echoing_command(proxied) as command:
        command.relays(b"one")
        quarantine()  # the instance's administrator tags it
        assert not inventory_sync(account=prod).errors  # sees the change: the gate is asked again, now
        command.wait_ended()
    assert command.process.returncode != 0
    said = as_session_reason(services.IAM_DENIED_MESSAGE)
    assert said.encode() in command.err, bytes(command.err)
    # The proxy writes the entry off its event loop while it closes the connection, so ssh may exit
    # first: waited for, then checked to be the only one.
    wait_for(
        lambda: LogbookEntry.objects.filter(action="session.terminated", request_id=proxied.access_request.pk).exists(),
        what="session.terminated",
    )
    terminated = LogbookEntry.objects.get(action="session.terminated", request_id=proxied.access_request.pk)
    assert terminated.detail["reason"] == services.IAM_DENIED
    assert terminated.detail["client"] == "cli"
    assert "explicitly denies ssm:StartSession" in terminated.detail["refusal"]
    assert terminated.detail["session_id"]  # its Session Manager session, terminated with it
    checked = LogbookEntry.objects.filter(action="iam.checked", detail__purpose="recheck").latest("id")
    assert checked.detail["allowed"] is False
