"""An ``ssh -L`` forward already open through the recording proxy ends when an admin takes its
target off the account: a destination beyond the instance, or one of the instance's own ports.
The forwards whose targets stay listed carry on; the closed one is on record as ``forward.closed``
with ``reason: "destination withdrawn"``. Real OpenSSH client, worker, daphne and devcloud sshd."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts.models import AwsAccount
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.sshd import echo_back, echo_server, sshd_available
from tests.stack import open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied, proxied_request, two_forwards, withdrawn_forwards
from tests.terminal.proxy.test_security import refusals

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

STAND_IN = "127.0.0.2"


def test_an_open_forward_ends_when_its_destination_is_taken_off_the_account(
    prod: AwsAccount, daphne: str, tmp_path: Path
) -> None:
    with echo_server(STAND_IN) as kept_port, echo_server(STAND_IN) as taken_port:
        kept, taken = f"{STAND_IN}:{kept_port}", f"{STAND_IN}:{taken_port}"
        AwsAccount.objects.filter(pk=prod.pk).update(forward_destinations=[kept, taken])
        proxied = proxied_request(prod, daphne, tmp_path)
        access_request = proxied.access_request
        with two_forwards(proxied, kept, taken) as forwards:
            # The admin takes one destination off the account (a plain save: a script's, the admin's).
            account = AwsAccount.objects.get(pk=prod.pk)
            account.forward_destinations = [kept]
            account.save()
            closed = wait_for(lambda: withdrawn_forwards(access_request.pk), what="the withdrawn forward closed")
            assert echo_back(forwards.taken, b"after\n") == b""
            # The other one still carries, and a new connection to the one taken off is refused.
            assert echo_back(forwards.kept, b"after\n") == b"after\n"
            assert echo_back(forwards.taken_again(), b"again\n") == b""
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
        with two_forwards(proxied, f"127.0.0.1:{kept_port}", f"localhost:{taken_port}") as forwards:
            _admin_saves_ports(prod, [kept_port])
            closed = wait_for(
                lambda: withdrawn_forwards(proxied.access_request.pk), what="the withdrawn forward closed"
            )
            assert echo_back(forwards.taken, b"after\n") == b""
            assert echo_back(forwards.kept, b"after\n") == b"after\n"
            # The connection read its ports when it opened; a new channel reads them afresh.
            assert echo_back(forwards.taken_again(), b"again\n") == b""
    assert [entry.detail["target"] for entry in closed] == [f"localhost:{taken_port}"]
    refused = wait_for(
        lambda: refusals(proxied.access_request.pk, "port forward"), what="the new connection to the port refused"
    )
    assert [entry.detail["reason"] for entry in refused] == [f"port {taken_port} is not open on this account"]
