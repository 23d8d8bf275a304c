"""An admin takes the instance's region off its AWS account while a CLI connection through the
recording proxy runs on it: the proxy ends it, the client told why (ssh's stderr), on record as
``session.terminated`` (``region``, ``cli``, its Session Manager session). Real daphne, worker,
devcloud, `passport` CLI and OpenSSH (tests/terminal/proxy/conftest.py)."""

from __future__ import annotations

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal import services
from terminal.proxy.session import as_session_reason
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied, echoing_command

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def test_taking_the_region_off_ends_the_proxied_cli_session(proxied: Proxied, prod: AwsAccount) -> None:
    region = proxied.grant.instance.region
    original = list(prod.regions)
    with echoing_command(proxied) as command:
        try:
            command.relays(b"one")
            account = AwsAccount.objects.get(pk=prod.pk)
            account.regions = [name for name in account.managed_regions if name != region] or ["eu-west-1"]
            account.save()  # the admin's form: the signal's path
            command.wait_ended()
        finally:
            AwsAccount.objects.filter(pk=prod.pk).update(regions=original)
    assert command.process.returncode != 0
    said = as_session_reason(services.region_taken_off_message(region))
    assert said.encode() in command.err, bytes(command.err)
    terminated = wait_for(
        lambda: LogbookEntry.objects.filter(action="session.terminated", request_id=proxied.access_request.pk).first(),
        what="session.terminated",
    )
    assert terminated.detail["reason"] == "region"
    assert terminated.detail["region"] == region
    assert terminated.detail["client"] == "cli"
    assert terminated.detail["session_id"]  # its Session Manager session, terminated with it
