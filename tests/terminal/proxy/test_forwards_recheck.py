"""An ``ssh -L`` forward through the recording proxy closes when its port is taken off the account even
when the proxy never hears of the change (``cli.forwarding_changed`` lost: the channel layer down at
the admin's save, or a change made without the model's signal). Each connection with open forwards
reads what is in force every ``PASSPORT_PROXY_FORWARDS_RECHECK_SECONDS`` (2 s here). Real OpenSSH
client, worker, daphne and devcloud sshd; the message path is tests/terminal/proxy/test_forwards_withdrawn.py."""

from __future__ import annotations

import time

import pytest

from accounts.models import AwsAccount
from tests.sshd import echo_back, echo_server, sshd_available
from tests.stack import open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied, two_forwards, withdrawn_forwards
from tests.terminal.proxy.test_security import refusals

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

RECHECK_SECONDS = 2


@pytest.fixture
def daphne_settings() -> dict[str, str]:
    """The proxy's daphne rechecks open forwards every RECHECK_SECONDS."""
    return {"PASSPORT_PROXY_FORWARDS_RECHECK_SECONDS": str(RECHECK_SECONDS)}


def test_a_withdrawn_forward_closes_within_the_period_though_no_message_came(
    proxied: Proxied, prod: AwsAccount
) -> None:
    with echo_server("127.0.0.1") as kept_port, echo_server("127.0.0.1") as taken_port:
        open_forward_ports(prod, [kept_port, taken_port])
        with two_forwards(proxied, f"127.0.0.1:{kept_port}", f"127.0.0.1:{taken_port}") as forwards:
            # The port goes with no signal, so no cli.forwarding_changed: only the periodic check can see it.
            AwsAccount.objects.filter(pk=prod.pk).update(extra_forward_ports=[kept_port])
            closed = wait_for(
                lambda: withdrawn_forwards(proxied.access_request.pk),
                what="the withdrawn forward closed by the periodic check",
                timeout=RECHECK_SECONDS * 4,
            )
            assert echo_back(forwards.taken, b"after\n") == b""
            assert echo_back(forwards.kept, b"after\n") == b"after\n"
            assert echo_back(forwards.taken_again(), b"again\n") == b""
            # The forward that stays is checked again and again, and left open.
            time.sleep(RECHECK_SECONDS * 2)
            assert echo_back(forwards.kept, b"later\n") == b"later\n"
    assert [entry.detail["target"] for entry in closed] == [f"127.0.0.1:{taken_port}"]
    assert len(withdrawn_forwards(proxied.access_request.pk)) == 1
    refused = wait_for(
        lambda: refusals(proxied.access_request.pk, "port forward"), what="the new connection to the port refused"
    )
    assert [entry.detail["reason"] for entry in refused] == [f"port {taken_port} is not open on this account"]
