"""An ``ssh -L`` forward through the recording proxy closes when its port is taken off the account even
when the proxy never hears of the change (``cli.forwarding_changed`` lost: the channel layer down at
the admin's save, or a change made without the model's signal). Each connection with open forwards
reads what is in force every ``PASSPORT_PROXY_FORWARDS_RECHECK_SECONDS`` (2 s here). Real OpenSSH
client, worker, daphne and devcloud sshd; the message path is tests/terminal/proxy/test_forwards_withdrawn.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from accounts.models import AwsAccount
from tests.sshd import connect_when_listening, echo_server, sshd_available, stop_ssh
from tests.stack import WorkerProcess, daphne_running, open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied
from tests.terminal.proxy.test_forwards_withdrawn import _echo, _forward, _withdrawn
from tests.terminal.proxy.test_security import _free_port, refusals

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

RECHECK_SECONDS = 2


@pytest.fixture
def daphne(worker: WorkerProcess, tmp_path: Path) -> Iterator[str]:
    """The proxy's daphne, rechecking open forwards every RECHECK_SECONDS."""
    env = {
        **worker.env,
        "PASSPORT_VAR_DIR": str(tmp_path / "var"),
        "PASSPORT_RECORDING_CHUNK_SECONDS": "1",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
        "PASSPORT_PROXY_FORWARDS_RECHECK_SECONDS": str(RECHECK_SECONDS),
    }
    with daphne_running(env, tmp_path / "daphne.log") as url:
        yield url


def test_a_withdrawn_forward_closes_within_the_period_though_no_message_came(
    proxied: Proxied, prod: AwsAccount
) -> None:
    with echo_server("127.0.0.1") as kept_port, echo_server("127.0.0.1") as taken_port:
        open_forward_ports(prod, [kept_port, taken_port])
        to_kept, to_taken = _free_port(), _free_port()
        forward = _forward(
            proxied.config, proxied.cli.env, f"{to_kept}:127.0.0.1:{kept_port}", f"{to_taken}:127.0.0.1:{taken_port}"
        )
        try:
            deadline = time.monotonic() + 60
            kept_conn = connect_when_listening(to_kept, deadline)
            taken_conn = connect_when_listening(to_taken, deadline)
            assert _echo(kept_conn, b"before\n") == b"before\n"
            assert _echo(taken_conn, b"before\n") == b"before\n"
            # The port goes with no signal, so no cli.forwarding_changed: only the periodic check can see it.
            AwsAccount.objects.filter(pk=prod.pk).update(extra_forward_ports=[kept_port])
            closed = wait_for(
                lambda: _withdrawn(proxied.access_request.pk),
                what="the withdrawn forward closed by the periodic check",
                timeout=RECHECK_SECONDS * 4,
            )
            assert _echo(taken_conn, b"after\n") == b""
            assert _echo(kept_conn, b"after\n") == b"after\n"
            assert _echo(connect_when_listening(to_taken, deadline), b"again\n") == b""
            # The forward that stays is checked again and again, and left open.
            time.sleep(RECHECK_SECONDS * 2)
            assert _echo(kept_conn, b"later\n") == b"later\n"
            kept_conn.close()
            taken_conn.close()
        finally:
            stop_ssh(forward)
    assert [entry.detail["target"] for entry in closed] == [f"127.0.0.1:{taken_port}"]
    assert len(_withdrawn(proxied.access_request.pk)) == 1
    refused = wait_for(
        lambda: refusals(proxied.access_request.pk, "port forward"), what="the new connection to the port refused"
    )
    assert [entry.detail["reason"] for entry in refused] == [f"port {taken_port} is not open on this account"]
