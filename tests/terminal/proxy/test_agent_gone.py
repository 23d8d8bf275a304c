"""The CLI's recording proxy to an instance whose SSM agent is gone (v1.2.0: "Fixed Passport crash
when tunneling if the SSM agent was missing on the target instance"): the portal's inventory still
says Online, devcloud's Systems Manager answers StartSession with TargetNotConnected, as AWS does.
A command and a tunnel (``ssh -N -L``) both end at once with the reason; the daphne serving them
logs no crash, and nothing is left open or on record as started."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal.models import SessionSlot, TerminalSession
from terminal.proxy.auth import CLOSE_UNAVAILABLE
from terminal.proxy.session import ProxyConnection
from tests.requests_app.test_forward_ports import make_scene
from tests.sshd import sshd_available
from tests.stack import Cloud, agent_gone, free_port, wait_for
from tests.terminal.proxy.conftest import CliPeer, Proxied

REASON = "The connection to the instance failed: Systems Manager could not start a session"


def _tunnel(proxied: Proxied) -> subprocess.CompletedProcess[bytes]:
    port = free_port()
    return subprocess.run(
        ["ssh", "-F", proxied.config, "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-N",
         "-L", f"127.0.0.1:{port}:localhost:22", "web-1"],
        env=proxied.cli.env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("how", ["command", "tunnel"])
@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
@pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available()))
def test_the_proxy_to_an_instance_whose_agent_is_gone_says_why_and_leaves_nothing(
    proxied: Proxied, prod: AwsAccount, aws: Cloud, tmp_path: Path, how: str
) -> None:
    before = _session_ids(aws, prod)
    with agent_gone(aws, prod.account_id, "web-1"):
        done = proxied.ssh("echo never") if how == "command" else _tunnel(proxied)

    assert done.returncode != 0
    assert b"passport: " + REASON.encode() in done.stderr, done.stderr
    assert b"not connected" in done.stderr, done.stderr
    assert b"never" not in done.stdout
    # Its place under the session cap is given back once the connection has ended.
    wait_for(lambda: not SessionSlot.objects.filter(user=proxied.alice).exists(), what="the slot released")
    assert not TerminalSession.objects.filter(grant=proxied.grant).exists()
    assert _session_ids(aws, prod) == before
    assert not LogbookEntry.objects.filter(
        action__in=["session.started", "terminal.started"], request_id=proxied.access_request.pk
    ).exists()
    log = (tmp_path / "daphne.log").read_text()
    assert "Traceback" not in log and "never retrieved" not in log, log[-4000:]


def _session_ids(aws: Cloud, account: AwsAccount) -> set[str]:
    """Every Session Manager session devcloud has for the account, open or ended."""
    sessions = aws.devcloud.runtime.sessions
    return {
        session["SessionId"]
        for active in (True, False)
        for session in sessions.sessions(account.account_id, "us-east-1", active=active)
    }


@pytest.mark.usefixtures("live_db")
def test_a_failed_upstream_leaves_no_unread_failure(aws: Cloud, settings: Any, monkeypatch: Any) -> None:
    """Once the client has logged in (``ssh -N -L``: no channel ever asks for the upstream), the
    upstream's StartSession fails: the connection ends with the reason, and the failure is not
    left for asyncio to report as an error when the task is collected."""
    # pytest's log capture keeps each record's arguments (the exception, its frames, the
    # connection) alive, which a process's logging does not: the warning goes nowhere here.
    silent = logging.getLogger("tests.silent")
    silent.propagate = False
    monkeypatch.setattr("terminal.proxy.session.logger", silent)
    scene = make_scene(aws, settings)
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)
    grant = Grant.objects.select_related("instance", "request__account").get(request=scene.request, instance=scene.web)
    peer = CliPeer()
    unread: list[dict[str, Any]] = []

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unread.append(context))
        proxy = ProxyConnection(user=scene.alice, grant=grant, peer=peer)
        proxy.authenticated()
        for _ in range(300):
            if peer.codes:
                break
            await asyncio.sleep(0.1)
        await proxy.end("the test is over")  # the ending already under way: waited for, not restarted
        del proxy
        gc.collect()  # a task whose failure nobody read is reported as it is collected

    with agent_gone(aws, scene.prod.account_id, "web-1"):
        async_to_sync(run)()

    assert peer.codes == [CLOSE_UNAVAILABLE]
    assert peer.texts and peer.texts[0]["type"] == "closed" and REASON in peer.texts[0]["reason"]
    assert [context.get("message") for context in unread] == []
