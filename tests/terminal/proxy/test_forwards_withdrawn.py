"""An ``ssh -L`` forward already open through the recording proxy ends when an admin takes its
target off the account: a destination beyond the instance, or one of the instance's own ports.
The forwards whose targets stay listed carry on; the closed one is on record as ``forward.closed``
with ``reason: "destination withdrawn"``. Real OpenSSH client, worker, daphne and devcloud sshd."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.factories import make_membership, make_user
from tests.sshd import connect_when_listening, echo_server, sshd_available, stop_ssh
from tests.stack import open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied, active_request, signed_in_cli
from tests.terminal.proxy.test_security import _free_port, refusals

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

STAND_IN = "127.0.0.2"
WITHDRAWN = "destination withdrawn"


def _echo(conn: socket.socket, data: bytes) -> bytes:
    """What comes back for ``data`` on an open forward; b"" once the forward is closed."""
    try:
        conn.sendall(data)
        return conn.recv(64)
    except OSError:
        return b""


def _forward(config: str, env: dict[str, str], *forwards: str) -> subprocess.Popen[bytes]:
    options = [option for forward in forwards for option in ("-L", forward)]
    return subprocess.Popen(
        ["ssh", "-F", config, "-oBatchMode=yes", "-N", *options, "web-1"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _withdrawn(request_id: int) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action="forward.closed", request_id=request_id, detail__reason=WITHDRAWN))


def test_an_open_forward_ends_when_its_destination_is_taken_off_the_account(
    prod: AwsAccount, daphne: str, tmp_path: Path
) -> None:
    with echo_server(STAND_IN) as kept_port, echo_server(STAND_IN) as taken_port:
        kept, taken = f"{STAND_IN}:{kept_port}", f"{STAND_IN}:{taken_port}"
        AwsAccount.objects.filter(pk=prod.pk).update(forward_destinations=[kept, taken])
        alice, approver = make_user("alice"), make_user("approver")
        make_membership(alice, prod, "admin")
        make_membership(approver, prod, "admin", can_approve=True)
        access_request = active_request(prod, alice, approver, ["web-1"])
        cli = signed_in_cli(daphne, tmp_path, alice)
        to_kept, to_taken = _free_port(), _free_port()
        forward = _forward(cli.json("ssh-config")["path"], cli.env, f"{to_kept}:{kept}", f"{to_taken}:{taken}")
        try:
            deadline = time.monotonic() + 60
            kept_conn = connect_when_listening(to_kept, deadline)
            taken_conn = connect_when_listening(to_taken, deadline)
            assert _echo(kept_conn, b"before\n") == b"before\n"
            assert _echo(taken_conn, b"before\n") == b"before\n"
            # The admin takes one destination off the account (a plain save: a script's, the admin's).
            account = AwsAccount.objects.get(pk=prod.pk)
            account.forward_destinations = [kept]
            account.save()
            closed = wait_for(lambda: _withdrawn(access_request.pk), what="the withdrawn forward closed")
            assert _echo(taken_conn, b"after\n") == b""
            # The other one still carries, and a new connection to the one taken off is refused.
            assert _echo(kept_conn, b"after\n") == b"after\n"
            assert _echo(connect_when_listening(to_taken, deadline), b"again\n") == b""
            kept_conn.close()
            taken_conn.close()
        finally:
            stop_ssh(forward)
    assert [entry.detail["target"] for entry in closed] == [taken]
    assert closed[0].detail["bytes_from_instance"] == len(b"before\n")
    refused = wait_for(lambda: refusals(access_request.pk, "port forward"), what="the new connection refused")
    assert [(entry.detail["port"], entry.detail["allowed_destinations"]) for entry in refused] == [(taken_port, [kept])]


def _admin_saves_ports(account: AwsAccount, ports: list[int]) -> None:
    """A site admin changes the account's Extra forwarding ports on its admin page."""
    admin, _ = superuser_client()
    url = f"/admin/accounts/awsaccount/{account.pk}/change/"
    post_ok(admin, url, form_data(admin, url, extra_forward_ports=", ".join(str(port) for port in ports)))


def test_an_open_forward_ends_when_its_port_on_the_instance_is_taken_off_the_account(
    proxied: Proxied, prod: AwsAccount
) -> None:
    with echo_server("127.0.0.1") as kept_port, echo_server("127.0.0.1") as taken_port:
        open_forward_ports(prod, [kept_port, taken_port])
        to_kept, to_taken = _free_port(), _free_port()
        forward = _forward(
            proxied.config, proxied.cli.env, f"{to_kept}:127.0.0.1:{kept_port}", f"{to_taken}:localhost:{taken_port}"
        )
        try:
            deadline = time.monotonic() + 60
            kept_conn = connect_when_listening(to_kept, deadline)
            taken_conn = connect_when_listening(to_taken, deadline)
            assert _echo(kept_conn, b"before\n") == b"before\n"
            assert _echo(taken_conn, b"before\n") == b"before\n"
            _admin_saves_ports(prod, [kept_port])
            closed = wait_for(lambda: _withdrawn(proxied.access_request.pk), what="the withdrawn forward closed")
            assert _echo(taken_conn, b"after\n") == b""
            assert _echo(kept_conn, b"after\n") == b"after\n"
            # The connection read its ports when it opened; a new channel reads them afresh.
            assert _echo(connect_when_listening(to_taken, deadline), b"again\n") == b""
            kept_conn.close()
            taken_conn.close()
        finally:
            stop_ssh(forward)
    assert [entry.detail["target"] for entry in closed] == [f"localhost:{taken_port}"]
    refused = wait_for(
        lambda: refusals(proxied.access_request.pk, "port forward"), what="the new connection to the port refused"
    )
    assert [entry.detail["reason"] for entry in refused] == [f"port {taken_port} is not open on this account"]
