"""An account with "Moderated sessions" on: the CLI gets nothing that runs with no approver watching.

Its own Session Manager sessions never pass the portal, so no approver could watch them: ssh on a
direct account (`passport ssh-config`, `connect`), `passport forward`, `passport aws-credentials`
are refused, say why and exit 5 (ssh, as the ProxyCommand's caller, exits 255 with the reason on
stderr); a forward open when a site admin turns moderation on ends (its Session Manager session
ended by the worker), says why and exits 7. Real stack: the CLI, the portal under daphne, the
Celery worker, devcloud and the local hosts' sshd, the Django admin's form."""

from __future__ import annotations

import socket
import subprocess

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from passport_cli.errors import Exit
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.cli.conftest import Cli, active_request_from_cli, forwarding
from tests.sshd import echo_back, echo_server, sshd_available
from tests.stack import Cloud, open_forward_ports, wait_for

CLI_PORTAL = "asgi"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.timeout(300),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

MODERATED = "are moderated: nothing reaches its instances unless an approver watches"


def test_ssh_on_a_moderated_direct_account_is_refused_and_says_why(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    """A row saved moderated and direct before the admin refused that: moderation wins."""
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT, require_session_join=True)
    web_id = aws.instance_id("web-1")
    access_request = active_request_from_cli(cli, prod, web_id, "moderated")
    username = access_request.grants.get().username
    config = cli.json("ssh-config")["path"]

    login = subprocess.run(
        ["ssh", "-F", config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "web-1", "echo ran-$((6*7)); whoami"],
        env=cli.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip

    assert "ran-42" not in login.stdout and username not in login.stdout, login.stdout
    assert login.returncode == 255, login.stderr
    assert MODERATED in login.stderr and "CLI sessions are direct" in login.stderr, login.stderr
    # `passport connect` prints the portal's reason once ssh gives the terminal back, and exits as refused.
    connected = cli.run("connect", "web-1", "--", "echo ran-$((6*7))")
    assert connected.returncode == Exit.REFUSED, (connected.stdout, connected.stderr)
    assert "ran-42" not in connected.stdout and MODERATED in connected.stderr, connected.stderr
    refused = list(LogbookEntry.objects.filter(action="session.refused", request_id=access_request.pk))
    assert len(refused) == 2 and {entry.detail["reason"] for entry in refused} == {"moderated"}
    assert {entry.detail["via"] for entry in refused} == {"cli"}
    assert not LogbookEntry.objects.filter(action="session.started", request_id=access_request.pk).exists()


def test_passport_forward_and_aws_credentials_are_refused_on_a_moderated_account(
    prod: AwsAccount, aws: Cloud, cli: Cli
) -> None:
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD, require_session_join=True)
    access_request = active_request_from_cli(cli, prod, aws.instance_id("web-1"), "moderated forward")
    with echo_server("127.0.0.1") as remote:
        open_forward_ports(prod, [remote])  # web-1 shares this machine's network

        forward = cli.run("forward", "web-1", f"0:{remote}", timeout=60)

    # Refused before it listens: a listener would only have every connection refused.
    assert forward.returncode == Exit.REFUSED, (forward.stdout, forward.stderr)
    assert "127.0.0.1:" not in forward.stdout
    assert "are moderated" in forward.stderr and "a forward cannot be watched" in forward.stderr, forward.stderr
    credentials = cli.run("aws-credentials", str(access_request.pk))
    assert credentials.returncode == Exit.REFUSED and not credentials.stdout, credentials.stdout
    assert MODERATED in credentials.stderr, credentials.stderr
    entry = LogbookEntry.objects.get(action="credentials.refused", request_id=access_request.pk)
    assert entry.detail["reason"] == "moderated"
    assert not LogbookEntry.objects.filter(action="session.started", request_id=access_request.pk).exists()


def test_an_open_forward_ends_when_a_site_admin_turns_moderation_on(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)
    access_request = active_request_from_cli(cli, prod, aws.instance_id("web-1"), "forward then moderated")
    with echo_server("127.0.0.1") as remote:
        open_forward_ports(prod, [remote])
        with forwarding(cli, "web-1", remote) as (process, local):
            conn = socket.create_connection(("127.0.0.1", local), timeout=30)
            assert echo_back(conn, b"before\n") == b"before\n"
            started = LogbookEntry.objects.get(action="session.started", request_id=access_request.pk)

            admin, _ = superuser_client()
            url = f"/admin/accounts/awsaccount/{prod.pk}/change/"
            post_ok(admin, url, form_data(admin, url, require_session_join="on"))

            ended = wait_for(
                lambda: LogbookEntry.objects.filter(
                    action="session.terminated", request_id=access_request.pk, detail__reason="moderation on"
                ).first(),
                what="the forward's session ended",
                timeout=60,
            )
            assert echo_back(conn, b"after\n") == b""
            conn.close()
            # The forward hears it, says why and exits: a new connection would only be refused.
            assert process.wait(timeout=60) == Exit.ACCESS_ENDED
            stderr = process.stderr.read() if process.stderr else ""
    assert ended.actor is None and ended.detail["session_id"] == started.detail["session_id"]
    assert ended.detail["via"] == "cli" and ended.detail["port"] == remote
    assert "are moderated" in stderr and "This forward is closed." in stderr, stderr
