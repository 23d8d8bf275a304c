"""A user CA key retired by force (the way for a compromised key) while a CLI connection through the
recording proxy runs on certificates it signed: hosts stop trusting it (authorized_keys rewritten),
but neither sshd nor the proxy re-checks a connection it let in, so the connection is ended, on
record as ``session.terminated`` with the reason ``ca_key_retired``. Real ssh, daphne, worker, devcloud."""

from __future__ import annotations

import pytest

from audit.models import LogbookEntry
from sshca.models import CaKey
from sshca.services import ca_retire, ca_rotate
from terminal import services
from terminal.proxy.session import as_session_reason
from tests.sshd import echo_back, echo_server, sshd_available
from tests.stack import open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied, forwards_open

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def test_retiring_the_ca_key_that_signed_a_proxy_connections_certificates_ends_it(proxied: Proxied) -> None:
    access_request = proxied.access_request
    with echo_server("127.0.0.1") as port:
        open_forward_ports(access_request.account, [port])
        with forwards_open(proxied, f"127.0.0.1:{port}") as forward:
            old = CaKey.objects.get(purpose="user", key_type="ed25519", state=CaKey.State.ACTIVE)
            assert old.certificates.filter(request_id=access_request.pk).exists()  # it signed this one's
            ca_rotate(key_type="ed25519")
            ca_retire(fingerprint=old.fingerprint, force=True)
            # The proxy ends the connection: ssh -N exits once its SSH connection is gone.
            wait_for(lambda: forward.process.poll() is not None, timeout=30, what="ssh -L to end")
            after = echo_back(forward.connections[0], b"after\n")
    assert after == b""
    terminated = wait_for(
        lambda: LogbookEntry.objects.filter(request_id=access_request.pk, action="session.terminated").first(),
        what="session.terminated",
    )
    assert terminated.detail["reason"] == services.CA_KEY_RETIRED
    assert terminated.detail["fingerprint"] == old.fingerprint
    assert terminated.detail["client"] == "cli"
    assert terminated.detail["certificate"] in {"client", "login"}
    closed = wait_for(
        lambda: LogbookEntry.objects.filter(request_id=access_request.pk, action="forward.closed").first(),
        what="forward.closed",
    )
    assert closed.detail["reason"] == as_session_reason(services.CA_KEY_RETIRED_MESSAGE)
