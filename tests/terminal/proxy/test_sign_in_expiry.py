"""A CLI proxy connection ends with the CLI sign-in (the bearer token) it was opened with.

The token acts as the person "for 12 hours", or less: no longer than the browser session that
confirmed it. The proxy reads it at the handshake; a ControlMaster (or ``ssh -N -L``) opened before
the token's end must not go on running commands or opening forwards after it. The connection keeps
the token's end and closes then (4401: the CLI says to sign in again), and its periodic check
re-reads the token, so a token ended or gone behind the connection's back is seen at the next round
at the latest. Real OpenSSH client (a ControlMaster), worker, daphne and devcloud sshd."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from accounts.models import ApiToken, AwsAccount, User
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal import services
from terminal.proxy.session import ProxyConnection
from terminal.proxy.sign_in import SignIn
from tests.conftest import World
from tests.sshd import connect_when_listening, echo_back, echo_server, sshd_available
from tests.stack import WorkerProcess, open_forward_ports, wait_for
from tests.terminal.proxy.conftest import CliPeer, Proxied
from tests.terminal.proxy.test_ending_without_a_shell import CHECK, CHECK_SECONDS, NO_CHECK, tunnel
from tests.terminal.proxy.test_security import refusals
from tests.terminal.test_consumers import make_active_grant

EXPIRED = "This CLI sign-in has expired; this session is closed. Sign in again with `passport auth login`."
# Long enough for the ControlMaster and its first forward to open on a busy machine.
FUSE_SECONDS = 30


def _forward_closed(request_id: int) -> list[LogbookEntry]:
    entries = LogbookEntry.objects.filter(action="forward.closed", request_id=request_id, detail__reason=EXPIRED)
    return list(entries)


@pytest.mark.parametrize(
    ("daphne_settings", "how"),
    [
        # The periodic check out of the way: the connection's own clock ends it at the token's end.
        (NO_CHECK, "reaches its end"),
        # Shortened behind the connection's back: its periodic check re-reads the token.
        (CHECK, "ended in the database"),
    ],
)
@pytest.mark.usefixtures("live_db", "worker")
@pytest.mark.integration
@pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available()))
def test_an_open_proxy_connection_ends_with_its_sign_in(
    proxied: Proxied, prod: AwsAccount, worker: WorkerProcess, tmp_path: Path, how: str
) -> None:
    control = str(tmp_path / "cm")
    mux = ["-oControlMaster=yes", f"-oControlPath={control}"]
    token = ApiToken.objects.get(user=proxied.alice)
    if how == "reaches its end":
        # As a token confirmed by a session that ends soon: its end is read at the handshake.
        ends = timezone.now() + timedelta(seconds=FUSE_SECONDS)
        ApiToken.objects.filter(pk=token.pk).update(expires_at=ends)

    def through_master(command: str) -> subprocess.CompletedProcess[bytes]:
        return proxied.ssh("-oControlMaster=no", f"-oControlPath={control}", command)

    with echo_server("127.0.0.1") as port:
        open_forward_ports(prod, [port])
        with tunnel(proxied, port, *mux) as (process, local):
            assert through_master("echo before").stdout == b"before\n"
            held = connect_when_listening(local, time.monotonic() + 10)
            assert echo_back(held, b"open\n") == b"open\n"
            if how == "reaches its end":
                assert timezone.now() < ends, "the connection took longer to open than the token's fuse"
                wait_seconds = (ends - timezone.now()).total_seconds() + 5
            else:
                ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
                wait_seconds = CHECK_SECONDS * 4
            try:
                _, stderr = process.communicate(timeout=wait_seconds)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the connection is still open {wait_seconds:.0f} s later, past its token's end")
            assert echo_back(held, b"after the end\n") == b""
            # The master is gone with it: this one asks the proxy afresh, with the same token.
            after = through_master("echo ran after the token expired")
    assert process.returncode != 0
    assert f"passport: {EXPIRED}".encode() in stderr, stderr
    assert b"ran after the token expired" not in after.stdout, after
    assert b"The token has expired" in after.stderr, after.stderr
    # The forward open at the end says why Passport closed it.
    closed = wait_for(lambda: _forward_closed(proxied.access_request.pk), what="the forward closed, on record")
    assert [entry.detail["port"] for entry in closed] == [port]


@pytest.mark.usefixtures("live_db")
def test_no_new_channel_opens_once_the_sign_in_has_ended(world: World) -> None:
    """Each new session or forward asks first: past the token's end it is refused, and on record,
    whatever the grant says."""
    grant = Grant.objects.select_related("instance", "request").get(pk=make_active_grant(world).pk)
    alice: User = world.requester

    async def asked(ends_in: timedelta) -> str | None:
        sign_in = SignIn(ends_at=timezone.now() + ends_in)
        proxy = ProxyConnection(user=alice, grant=grant, peer=CliPeer(), sign_in=sign_in)
        try:
            return await proxy.refusal("session", command="id")
        finally:
            await proxy.end("the test is over")  # and its Logbook entries written

    assert async_to_sync(asked)(timedelta(minutes=5)) is None
    assert async_to_sync(asked)(timedelta(seconds=-1)) == EXPIRED
    refused = wait_for(lambda: refusals(grant.request_id, "session"), what="the refusal on record")
    assert [(entry.detail["reason"], entry.detail["command"]) for entry in refused] == [(EXPIRED, "id")]
    assert services.SIGN_IN_EXPIRED_MESSAGE == EXPIRED
