"""A CLI proxy connection with no shell running (``ssh -N -L``, an idle ControlMaster, Ansible's
ControlPersist) ends with its request too, and nothing new opens through it after the end.

Such a connection has no open TerminalSession row, only its SessionSlot. The ending tells it to close
(``terminal.close`` on the request's group); should that message be lost, each new session or
``direct-tcpip`` channel reads the grant first and is refused, and the connection's own periodic check
(``PASSPORT_PROXY_REQUEST_CHECK_SECONDS``) ends it with the request's reason. The removal of the
user (the worker's, which would end the Session Manager session too) is held back here: a backlog,
a slow Run Command. Real OpenSSH client, worker, daphne and devcloud sshd."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services as request_services
from requests_app.models import AccessRequest
from terminal.models import TerminalSession
from terminal.services import request_group
from tests.sshd import connect_when_listening, echo_back, echo_server, sshd_available, stop_ssh
from tests.stack import WorkerProcess, free_port, open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied
from tests.terminal.proxy.test_security import refusals

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

COMPLETED = "The access request was completed; this session is closed."
EXPIRED = "The access request expired; this session is closed."
CHECK_SECONDS = 2
# The periodic check out of the way: only the ending's message (or a refusal) can be what acts.
NO_CHECK = {"PASSPORT_PROXY_REQUEST_CHECK_SECONDS": "3600"}
CHECK = {"PASSPORT_PROXY_REQUEST_CHECK_SECONDS": str(CHECK_SECONDS)}


@contextmanager
def held_back(worker: WorkerProcess) -> Iterator[None]:
    """The worker (and its scheduler) stopped: the ending's removal, and the expiry sweep, wait."""
    worker.stop()
    try:
        yield
    finally:
        worker.start()


def lose_messages_to(group: str) -> None:
    """Take every channel out of a channel-layer group, as if its messages were lost (the channel
    layer down at the ending, a daphne whose membership expired)."""
    layer = get_channel_layer()

    async def drop() -> None:
        connection = layer.connection(layer.consistent_hash(group))
        for member in await connection.zrange(layer._group_key(group), 0, -1):
            await layer.group_discard(group, member.decode())

    async_to_sync(drop)()


@contextmanager
def tunnel(proxied: Proxied, port: int, *extra: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``ssh -N -L LOCAL:localhost:PORT web-1`` through the proxy, carrying b"before" there and back
    once; yields the ssh client and LOCAL. Stopped after the block if still running."""
    local = free_port()
    process = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", *extra, "-N", "-L", f"{local}:localhost:{port}", "web-1"],
        env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with connect_when_listening(local, time.monotonic() + 60) as first:
            assert echo_back(first, b"before\n") == b"before\n"
        yield process, local
    finally:
        if process.poll() is None:
            stop_ssh(process)


def _ended(process: subprocess.Popen[bytes], seconds: float = 60) -> bytes:
    """The ssh client's stderr once it has exited (a generous wait: nothing else would end it)."""
    try:
        _, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the connection is still open {seconds} s after the end")
    assert process.returncode != 0
    return stderr


def _forwards_closed(request_id: int) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action="forward.closed", request_id=request_id).order_by("pk"))


@pytest.mark.parametrize("daphne_settings", [NO_CHECK])
def test_a_tunnel_is_told_to_close_when_its_request_ends(
    proxied: Proxied, prod: AwsAccount, worker: WorkerProcess
) -> None:
    with echo_server("127.0.0.1") as port:
        open_forward_ports(prod, [port])
        with tunnel(proxied, port) as (process, local), held_back(worker):
            conn = connect_when_listening(local, time.monotonic() + 10)
            assert echo_back(conn, b"open\n") == b"open\n"
            request_services.access_request_complete(access_request=proxied.access_request, actor=proxied.alice)
            stderr = _ended(process)
            assert echo_back(conn, b"after the end\n") == b""
    assert f"passport: {COMPLETED}".encode() in stderr, stderr
    closed = wait_for(lambda: len(_forwards_closed(proxied.access_request.pk)) == 2 and
                      _forwards_closed(proxied.access_request.pk), what="both forwards on record")  # fmt: skip
    # The one open at the end says why Passport closed it.
    assert [entry.detail.get("reason") for entry in closed] == [None, COMPLETED]


@pytest.mark.parametrize("daphne_settings", [NO_CHECK])
def test_a_connection_that_missed_the_end_opens_no_new_forward_and_runs_no_new_command(
    proxied: Proxied, prod: AwsAccount, worker: WorkerProcess, tmp_path: Path
) -> None:
    control = str(tmp_path / "cm")
    mux = ["-oControlMaster=yes", f"-oControlPath={control}"]

    def through_master(command: str) -> subprocess.CompletedProcess[bytes]:
        return proxied.ssh("-oControlMaster=no", f"-oControlPath={control}", command)

    access_request = proxied.access_request
    with echo_server("127.0.0.1") as port:
        open_forward_ports(prod, [port])
        with tunnel(proxied, port, *mux) as (process, local), held_back(worker):
            assert through_master("echo before").stdout == b"before\n"
            lose_messages_to(request_group(access_request.pk))
            request_services.access_request_complete(access_request=access_request, actor=proxied.alice)
            time.sleep(1)  # the ending committed long since; no message came

            after = through_master("id -un; echo ran after the end")
            fresh = echo_back(connect_when_listening(local, time.monotonic() + 5), b"new channel\n")
            assert process.poll() is None, "the connection itself is the periodic check's to end (here: never)"
    assert after.returncode != 0 and b"ran after the end" not in after.stdout, after
    assert f"passport: {COMPLETED}".encode() in after.stderr, after.stderr
    assert fresh == b""
    assert TerminalSession.objects.filter(grant=proxied.grant).count() == 1  # "echo before" only
    refused_session = wait_for(lambda: refusals(access_request.pk, "session"), what="the command's refusal")
    refused_forward = wait_for(lambda: refusals(access_request.pk, "port forward"), what="the forward's refusal")
    assert [entry.detail["reason"] for entry in refused_session] == [COMPLETED]
    assert refused_session[0].detail["command"] == "id -un; echo ran after the end"
    assert [(entry.detail["reason"], entry.detail["port"]) for entry in refused_forward] == [(COMPLETED, port)]
    for entry in [*refused_session, *refused_forward]:
        assert proxied.grant.instance.instance_id not in entry.detail["reason"]


@pytest.mark.parametrize("daphne_settings", [CHECK])
@pytest.mark.parametrize("how", ["completed", "expired"])
def test_the_periodic_check_ends_a_connection_whose_close_message_was_lost(
    proxied: Proxied, prod: AwsAccount, worker: WorkerProcess, how: str
) -> None:
    access_request = proxied.access_request
    with echo_server("127.0.0.1") as port:
        open_forward_ports(prod, [port])
        with tunnel(proxied, port) as (process, local), held_back(worker):
            conn = connect_when_listening(local, time.monotonic() + 10)
            assert echo_back(conn, b"open\n") == b"open\n"
            lose_messages_to(request_group(access_request.pk))
            if how == "completed":
                request_services.access_request_complete(access_request=access_request, actor=proxied.alice)
            else:
                # Past its end time, and the expiry sweep (the worker's scheduler) has not run yet.
                past = timezone.now() - timedelta(seconds=1)
                AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=past)
            stderr = _ended(process)
            assert echo_back(conn, b"after the end\n") == b""
    reason = COMPLETED if how == "completed" else EXPIRED
    assert f"passport: {reason}".encode() in stderr, stderr
    closed = wait_for(lambda: len(_forwards_closed(access_request.pk)) == 2 and
                      _forwards_closed(access_request.pk), what="both forwards on record")  # fmt: skip
    assert [entry.detail.get("reason") for entry in closed] == [None, reason]
