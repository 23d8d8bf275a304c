"""An admin takes the instance's region off its AWS account while a CLI connection through the
recording proxy runs on it: the proxy ends it, the client told why (ssh's stderr), on record as
``session.terminated`` (``region``, ``cli``, its Session Manager session). Real daphne, worker,
devcloud, `passport` CLI and OpenSSH (tests/terminal/proxy/conftest.py)."""

from __future__ import annotations

import subprocess

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal import services
from terminal.proxy.session import as_session_reason
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied
from tests.terminal.proxy.test_iam_recheck_proxied import _collect

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def test_taking_the_region_off_ends_the_proxied_cli_session(proxied: Proxied, prod: AwsAccount) -> None:
    grant = proxied.access_request.grants.select_related("instance").get(instance__name="web-1")
    region = grant.instance.region
    process = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-T", "web-1",
         'echo started; while read line; do echo "got-$line"; done'],
        env=proxied.cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = bytearray(), bytearray()
    readers = [_collect(process.stdout, out), _collect(process.stderr, err)]
    assert process.stdin is not None
    original = list(prod.regions)
    try:
        wait_for(lambda: b"started" in out, what="the command running")
        process.stdin.write(b"one\n")
        process.stdin.flush()
        wait_for(lambda: b"got-one" in out, what="the session relaying")
        account = AwsAccount.objects.get(pk=prod.pk)
        account.regions = [name for name in account.managed_regions if name != region] or ["eu-west-1"]
        account.save()  # the admin's form: the signal's path
        wait_for(lambda: process.poll() is not None, timeout=30, what="ssh to end")
    finally:
        AwsAccount.objects.filter(pk=prod.pk).update(regions=original)
        if process.poll() is None:
            process.kill()
        for reader in readers:
            reader.join(timeout=5)
    assert process.returncode != 0
    said = as_session_reason(services.region_taken_off_message(region))
    assert said.encode() in err, bytes(err)
    terminated = wait_for(
        lambda: LogbookEntry.objects.filter(action="session.terminated", request_id=proxied.access_request.pk).first(),
        what="session.terminated",
    )
    assert terminated.detail["reason"] == "region"
    assert terminated.detail["region"] == region
    assert terminated.detail["client"] == "cli"
    assert terminated.detail["session_id"]  # its Session Manager session, terminated with it
