"""Revoking a CLI sign-in (the person's "CLI sign-ins" page, a site admin, `auth logout` elsewhere, a
password change) ends what it opened, `passport forward` too, whose Session Manager session the CLI
holds itself (nothing of it passes the portal): the worker ends the sessions that sign-in started
(TerminateSession, ``session.terminated`` with ``"reason": "cli sign-in revoked"``), and the forward,
whose next check the portal refuses, says why, stops listening and exits 3. A new local connection
never reaches the instance on the old session. Real stack: the CLI, the portal, the Celery worker,
devcloud serving smux."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from accounts import cli_tokens
from accounts.models import ApiToken, AwsAccount
from audit.models import LogbookEntry
from passport_cli.errors import Exit
from requests_app.models import AccessRequest
from tests.cli.conftest import Cli, active_request_from_cli, forwarding
from tests.cli.helpers import session_terminated
from tests.sshd import echo_back, echo_server
from tests.stack import Cloud, ssm_session_active, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker"), pytest.mark.timeout(300)]

SIGNED_OUT = "Your CLI sign-in is no longer valid (revoked, or expired)"


def _carried(local: int, line: bytes) -> bytes:
    """What a new local connection to the forward's port gets back for ``line`` (b"": refused or cut)."""
    try:
        later = socket.create_connection(("127.0.0.1", local), timeout=10)
    except OSError:
        return b""
    try:
        return echo_back(later, line)
    except OSError:
        return b""
    finally:
        later.close()


def _stops(process: subprocess.Popen[str], local: int) -> str:
    """The forward exits 3 having said why, and no longer listens; returns its stderr."""
    assert process.wait(timeout=60) == Exit.AUTH
    stderr = process.stderr.read() if process.stderr else ""
    assert SIGNED_OUT in stderr, stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", local), timeout=5)
    return stderr


@dataclass
class Carrying:
    access_request: AccessRequest
    remote: int  # the port forwarded to, on the instance
    process: subprocess.Popen[str]
    local: int
    first: socket.socket  # a connection through the forward, carried once


@contextmanager
def _forward_carrying(cli: Cli, prod: AwsAccount, aws: Cloud, *, watch_seconds: str) -> Iterator[Carrying]:
    """alice's `passport forward` to an echo server on win-ad-1, checking its access every
    ``watch_seconds``, with one connection through it that has carried a line."""
    access_request = active_request_from_cli(cli, prod, aws.instance_id("win-ad-1"), "fwd")
    cli.env["PASSPORT_CONNECT_WATCH_SECONDS"] = watch_seconds
    with echo_server("127.0.0.1") as remote:
        AwsAccount.objects.filter(pk=prod.pk).update(extra_forward_ports=[remote])
        with forwarding(cli, "win-ad-1", remote) as (process, local):
            first = socket.create_connection(("127.0.0.1", local), timeout=30)
            assert echo_back(first, b"before\n") == b"before\n"
            yield Carrying(access_request, remote, process, local, first)


def _revoke(access_request: AccessRequest) -> ApiToken:
    """The laptop is lost: the site admin revokes alice's CLI sign-in."""
    token = ApiToken.objects.get(user=access_request.requester)
    assert cli_tokens.api_token_revoke(token=token, actor=None, reason=cli_tokens.RevokeReason.REVOKED_BY_ADMIN)
    return token


def test_a_forward_stops_carrying_once_its_sign_in_is_revoked(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    """The forward checks often here: it, or the worker, may be first to end the session."""
    with _forward_carrying(cli, prod, aws, watch_seconds="0.5") as forward:
        started = LogbookEntry.objects.get(action="session.started", request_id=forward.access_request.pk)
        session_id = started.detail["session_id"]
        _revoke(forward.access_request)

        _stops(forward.process, forward.local)
        assert _carried(forward.local, b"after revocation\n") == b""
        assert echo_back(forward.first, b"x\n") == b""
        forward.first.close()
    wait_for(lambda: not ssm_session_active(aws, session_id), what="the forward's session ended", timeout=30)


def test_the_worker_ends_a_revoked_sign_ins_forward_and_says_why(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    """The forward checks only every minute here: the worker ends its session, on record, and the
    forward, its connection cut, checks at once, is refused and exits."""
    with _forward_carrying(cli, prod, aws, watch_seconds="60") as forward:
        started = LogbookEntry.objects.get(action="session.started", request_id=forward.access_request.pk)
        session_id = started.detail["session_id"]
        assert started.detail["cli_token"] == ApiToken.objects.get(user=forward.access_request.requester).pk
        assert ssm_session_active(aws, session_id)

        token = _revoke(forward.access_request)

        ended = session_terminated(forward.access_request.pk, session_id, what="the revoked sign-in's session ended")
        assert not ssm_session_active(aws, session_id)
        assert echo_back(forward.first, b"after\n") == b""
        forward.first.close()
        _stops(forward.process, forward.local)
        assert _carried(forward.local, b"after revocation\n") == b""
    assert ended.actor is None and ended.instance_ids.split() == [aws.instance_id("win-ad-1")]
    assert ended.detail["reason"] == "cli sign-in revoked" and ended.detail["token"] == token.pk
    assert ended.detail["revoked"] == "revoked_by_admin" and ended.detail["port"] == forward.remote
    assert "error" not in ended.detail
