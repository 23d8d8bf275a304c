"""An account's "Moderated sessions" turned on while a CLI session runs through the proxy: it stops
relaying until an approver watches, says so on the client's stderr, and is on record. Real daphne,
worker, devcloud, `passport` CLI and OpenSSH (tests/terminal/proxy/conftest.py)."""

from __future__ import annotations

import time

import pytest

from accounts.models import ApiToken, AwsAccount
from audit.models import LogbookEntry
from terminal.models import TerminalSession
from terminal.presence import Watcher, watcher_beat
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied, echoing_command

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def test_turning_moderation_on_holds_an_open_cli_session_until_an_approver_watches(
    proxied: Proxied, prod: AwsAccount
) -> None:
    with echoing_command(proxied) as command:
        record = TerminalSession.objects.get(grant=proxied.grant, ended_at__isnull=True)
        account = AwsAccount.objects.get(pk=prod.pk)
        account.require_session_join = True
        account.save()  # what the admin's form does
        wait_for(
            lambda: LogbookEntry.objects.filter(action="session.moderation_applied").exists(),
            what="moderation applied",
        )
        command.send(b"one")
        time.sleep(3)
        assert b"got-one" not in command.out  # held: nothing reaches the instance while no approver watches
        watcher = Watcher(id="w1", user_id=proxied.approver.pk, name="approver", approver=True)
        watcher_beat(session_id=record.pk, watcher=watcher)
        wait_for(lambda: b"got-one" in command.out, what="input once an approver watches")
        assert command.process.stdin is not None
        command.process.stdin.close()
        command.process.wait(timeout=30)
    assert command.process.returncode == 0, bytes(command.err)
    said = b"sessions are now moderated: this session is paused until an approver watches it"
    assert said in command.err, bytes(command.err)
    entry = LogbookEntry.objects.get(action="session.moderation_applied")
    assert entry.request_id == proxied.access_request.pk
    assert entry.detail == {
        "terminal_session": record.pk,
        "of": proxied.alice.username,
        "client": "cli",
        "kind": record.kind,
        "held": True,
        # Written on the connection the CLI opened with its sign-in: it names that token (audit.origin).
        "cli_token": ApiToken.objects.get(user=proxied.alice).pk,
    }
