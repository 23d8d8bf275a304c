"""``ssh -L`` through the recording proxy on an account whose sessions are moderated: no approver can
watch a forward's bytes, so none is relayed (shells and commands wait for an approver instead). A new
one is refused, ssh says why, and ``proxy.refused`` has ``"what": "forward"``, ``"reason":
"moderated"``; those open when a site admin turns moderation on close at once (``forward.closed``,
``reason: "moderation on"``). Real OpenSSH client, worker, daphne and devcloud sshd."""

from __future__ import annotations

import subprocess
import time

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.sshd import connect_when_listening, echo_back, echo_server, sshd_available, stop_ssh
from tests.stack import free_port, open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied, forwards_open
from tests.terminal.proxy.test_security import refusals

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

SAID = "Sessions on this account are moderated"


def test_an_ssh_forward_is_refused_on_a_moderated_account(proxied: Proxied, prod: AwsAccount) -> None:
    AwsAccount.objects.filter(pk=prod.pk).update(require_session_join=True)
    with echo_server("127.0.0.1") as port:
        open_forward_ports(prod, [port])
        local = free_port()
        process = subprocess.Popen(
            ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-N", "-L", f"{local}:127.0.0.1:{port}", "web-1"],
            env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            connection = connect_when_listening(local, time.monotonic() + 60)
            assert echo_back(connection, b"select secrets\n") == b""
            connection.close()
            refused = wait_for(lambda: refusals(proxied.access_request.pk, "forward"), what="the forward refused")
        finally:
            stop_ssh(process)
        stderr = process.stderr.read().decode() if process.stderr else ""
    assert "administratively prohibited" in stderr and SAID in stderr, stderr
    assert [entry.detail["reason"] for entry in refused] == ["moderated"]
    assert refused[0].actor == proxied.alice and refused[0].instance_ids.split() == [proxied.grant.instance.instance_id]
    assert (refused[0].detail["host"], refused[0].detail["port"]) == ("127.0.0.1", port)
    assert not LogbookEntry.objects.filter(action="forward.closed", request_id=proxied.access_request.pk).exists()


def test_open_forwards_close_when_a_site_admin_turns_moderation_on(proxied: Proxied, prod: AwsAccount) -> None:
    access_request = proxied.access_request
    with echo_server("127.0.0.1") as port:
        open_forward_ports(prod, [port])
        with forwards_open(proxied, f"127.0.0.1:{port}") as forwards:
            admin, _ = superuser_client()
            url = f"/admin/accounts/awsaccount/{prod.pk}/change/"
            post_ok(admin, url, form_data(admin, url, require_session_join="on"))
            # Told at once by the save (the periodic recheck comes only every 30 s).
            closed = wait_for(
                lambda: list(
                    LogbookEntry.objects.filter(
                        action="forward.closed", request_id=access_request.pk, detail__reason="moderation on"
                    )
                ),
                what="the open forward closed",
                timeout=20,
            )
            assert echo_back(forwards.connections[0], b"after\n") == b""
            # A new connection through the same ssh is refused.
            again = connect_when_listening(forwards.local_ports[0], forwards.deadline)
            assert echo_back(again, b"again\n") == b""
            again.close()
    assert [entry.detail["target"] for entry in closed] == [f"127.0.0.1:{port}"]
    assert closed[0].detail["bytes_from_instance"] == len(b"before\n")
    refused = wait_for(lambda: refusals(access_request.pk, "forward"), what="the new connection refused")
    assert [entry.detail["reason"] for entry in refused] == ["moderated"]
