"""An account's "Moderated sessions" turned on while a CLI session runs through the proxy: it stops
relaying until an approver watches, says so on the client's stderr, and is on record. Real daphne,
worker, devcloud, `passport` CLI and OpenSSH (tests/terminal/proxy/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import IO

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal.models import TerminalSession
from terminal.presence import Watcher, watcher_beat
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def _collect(stream: IO[bytes] | None, into: bytearray) -> threading.Thread:
    """Read ``stream`` into ``into`` as it comes, in a thread of its own."""
    assert stream is not None

    def read() -> None:
        while chunk := os.read(stream.fileno(), 4096):
            into.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_turning_moderation_on_holds_an_open_cli_session_until_an_approver_watches(
    proxied: Proxied, prod: AwsAccount
) -> None:
    process = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-T", "web-1",
         'echo started; while read line; do echo "got-$line"; done'],
        env=proxied.cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = bytearray(), bytearray()
    readers = [_collect(process.stdout, out), _collect(process.stderr, err)]
    assert process.stdin is not None
    try:
        wait_for(lambda: b"started" in out, what="the command running")
        record = TerminalSession.objects.get(grant=proxied.grant, ended_at__isnull=True)
        account = AwsAccount.objects.get(pk=prod.pk)
        account.require_session_join = True
        account.save()  # what the admin's form does
        wait_for(
            lambda: LogbookEntry.objects.filter(action="session.moderation_applied").exists(),
            what="moderation applied",
        )
        process.stdin.write(b"one\n")
        process.stdin.flush()
        time.sleep(3)
        assert b"got-one" not in out  # held: nothing reaches the instance while no approver watches
        watcher = Watcher(id="w1", user_id=proxied.approver.pk, name="approver", approver=True)
        watcher_beat(session_id=record.pk, watcher=watcher)
        wait_for(lambda: b"got-one" in out, what="input once an approver watches")
        process.stdin.close()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        for reader in readers:
            reader.join(timeout=5)
    assert process.returncode == 0, bytes(err)
    assert b"sessions are now moderated: this session is paused until an approver watches it" in err, bytes(err)
    entry = LogbookEntry.objects.get(action="session.moderation_applied")
    assert entry.request_id == proxied.access_request.pk
    assert entry.detail == {
        "terminal_session": record.pk,
        "of": proxied.alice.username,
        "client": "cli",
        "kind": record.kind,
        "held": True,
    }
