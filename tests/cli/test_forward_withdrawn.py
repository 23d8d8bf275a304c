"""`passport forward` holds its own Session Manager session (the CLI speaks the data channel; nothing
of it passes the portal). When a site admin takes its port off the account in the admin, the worker
ends that session (TerminateSession), so the forward stops carrying at once rather than at the end
of the request, and the CLI says why and exits (7); a forward to a port still open carries on.
Real stack: the CLI, the portal, the Celery worker, devcloud serving smux, the Django admin's form."""

from __future__ import annotations

import socket

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from passport_cli.errors import Exit
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.cli.conftest import Cli, active_request_from_cli, forwarding
from tests.cli.helpers import session_terminated
from tests.sshd import echo_back, echo_server
from tests.stack import Cloud, ssm_session_active, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker"), pytest.mark.timeout(300)]


def _session_to(request_id: int, port: int) -> str:
    entry = wait_for(
        lambda: LogbookEntry.objects.filter(action="session.started", request_id=request_id, detail__port=port).first(),
        what=f"the session to port {port}",
    )
    return str(entry.detail["session_id"])


def test_a_forward_ends_when_an_admin_takes_its_port_off_the_account(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    access_request = active_request_from_cli(cli, prod, aws.instance_id("win-ad-1"), "fwd")

    with echo_server("127.0.0.1") as taken, echo_server("127.0.0.1") as kept:
        AwsAccount.objects.filter(pk=prod.pk).update(extra_forward_ports=[taken, kept])
        with (
            forwarding(cli, "win-ad-1", taken) as (to_taken, taken_local),
            forwarding(cli, "win-ad-1", kept) as (_, kept_local),
        ):
            taken_conn = socket.create_connection(("127.0.0.1", taken_local), timeout=30)
            kept_conn = socket.create_connection(("127.0.0.1", kept_local), timeout=30)
            assert echo_back(taken_conn, b"before\n") == b"before\n"
            assert echo_back(kept_conn, b"before\n") == b"before\n"
            taken_session, kept_session = _session_to(access_request.pk, taken), _session_to(access_request.pk, kept)

            # A site admin takes one port off the account on its admin page.
            admin, _ = superuser_client()
            url = f"/admin/accounts/awsaccount/{prod.pk}/change/"
            post_ok(admin, url, form_data(admin, url, extra_forward_ports=str(kept)))

            ended = session_terminated(access_request.pk, taken_session, what="the withdrawn port's session ended")
            assert not ssm_session_active(aws, taken_session)
            assert echo_back(taken_conn, b"after\n") == b""
            # The other forward still carries, over its own session.
            assert ssm_session_active(aws, kept_session)
            assert echo_back(kept_conn, b"after\n") == b"after\n"
            # The forward to the withdrawn port hears it as its connection ends, says why and exits:
            # a listener left open would only have every new connection refused.
            assert to_taken.wait(timeout=60) == Exit.ACCESS_ENDED
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", taken_local), timeout=5)
            assert echo_back(kept_conn, b"still\n") == b"still\n"
            for conn in (taken_conn, kept_conn):
                conn.close()
        stderr = to_taken.stderr.read() if to_taken.stderr else ""
    assert ended.actor is None and ended.instance_ids.split() == [aws.instance_id("win-ad-1")]
    assert ended.detail["reason"] == "port withdrawn" and ended.detail["port"] == taken
    assert ended.detail["allowed"] == [22, 3389, kept] and "error" not in ended.detail
    assert not LogbookEntry.objects.filter(action="session.terminated", detail__session_id=kept_session).exists()
    assert f"Port {taken} is not open for sessions on {prod.name}" in stderr, stderr
    assert "This forward is closed." in stderr, stderr
