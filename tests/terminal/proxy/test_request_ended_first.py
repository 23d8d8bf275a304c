"""The CLI's recording proxy when the request's ending reaches the instance before the portal's
message reaches the proxy (the ending's removal ends the Session Manager session; the channel
layer's ``terminal.close`` comes later, or not at all): the connection closes with the request's
own reason, not as a lost connection. A tunnel (``ssh -N``) has no shell whose end would say it
first: what it hears is what the proxy said."""

from __future__ import annotations

import subprocess

import pytest
from django.utils import timezone

from audit.models import LogbookEntry
from fleet import fleet_for
from requests_app.models import AccessRequest, EndReason, RequestStatus
from tests.sshd import sshd_available
from tests.stack import free_port, wait_for
from tests.terminal.proxy.conftest import Proxied

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def test_a_tunnel_whose_session_ends_with_its_request_is_told_the_requests_reason(proxied: Proxied) -> None:
    access_request = proxied.access_request
    tunnel = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-o", "BatchMode=yes", "-N", "-L", f"127.0.0.1:{free_port()}:localhost:8080",
         "web-1"],
        env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        started = wait_for(
            lambda: LogbookEntry.objects.filter(
                action="session.started", request_id=access_request.pk, detail__via="cli-proxy"
            ).first(),
            what="the proxy's Session Manager session",
        )
        # The request is over (no ending signals: no channel-layer message), and its session ended.
        AccessRequest.objects.filter(pk=access_request.pk).update(
            status=RequestStatus.COMPLETED, end_reason=EndReason.COMPLETED, ended_at=timezone.now()
        )
        fleet_for(proxied.grant.request.account).terminate_session(
            started.detail["session_id"], proxied.grant.instance.region
        )
        _, stderr = tunnel.communicate(timeout=60)
    finally:
        if tunnel.poll() is None:
            tunnel.kill()
            tunnel.communicate(timeout=10)
    assert b"passport: The access request was completed; this session is closed." in stderr, stderr
    assert b"The connection to the instance closed" not in stderr, stderr
