"""One CLI proxy connection holds at most ``PASSPORT_PROXY_MAX_FORWARDS`` ``ssh -L`` connections open at
once (3 here). Each holds memory in the web process (up to a window of the target's bytes while the
local reader does not read), and the cap on open sessions counts a connection with only forwards once,
so past the limit a new one is refused: OpenSSH's client is told why, and the Logbook has one
``proxy.refused`` (``forward``, ``too many forwards``) however many were refused, the rest counted.
Closing one makes room for another. Real OpenSSH client, worker, daphne and devcloud sshd."""

from __future__ import annotations

import socket
import time

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry, RefusalTally
from tests.passport_portal.production_env import start_production
from tests.sshd import connect_when_listening, echo_back, echo_server, sshd_available
from tests.stack import open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied, in_one_refusal_window
from tests.terminal.proxy.test_ending_without_a_shell import tunnel
from tests.terminal.proxy.test_security import refusals

MAX_FORWARDS = 3
REFUSED = 4


@pytest.fixture
def daphne_settings() -> dict[str, str]:
    return {"PASSPORT_PROXY_MAX_FORWARDS": str(MAX_FORWARDS)}


def _opened(local: int, deadline: float, line: bytes) -> tuple[socket.socket, bytes]:
    """A new connection to the tunnel's local port, and what the echo server behind it sends back
    for ``line`` (b"" when the proxy refused the forward and the ssh client closed it)."""
    conn = connect_when_listening(local, deadline)
    return conn, echo_back(conn, line)


def _forwards_closed(request_id: int) -> list[LogbookEntry]:
    """The forwards on record as closed: the tunnel's first, and each one closed since."""
    return list(LogbookEntry.objects.filter(action="forward.closed", request_id=request_id))


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
@pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available()))
def test_one_connection_opens_at_most_the_limit_of_forwards_at_once(proxied: Proxied, prod: AwsAccount) -> None:
    in_one_refusal_window()
    with echo_server("127.0.0.1") as port:
        open_forward_ports(prod, [port])
        with tunnel(proxied, port) as (process, local):
            wait_for(lambda: len(_forwards_closed(proxied.access_request.pk)) == 1, what="the tunnel's first closed")
            deadline = time.monotonic() + 60
            held = [_opened(local, deadline, f"open {n}\n".encode()) for n in range(MAX_FORWARDS)]
            assert [answer for _, answer in held] == [f"open {n}\n".encode() for n in range(MAX_FORWARDS)]
            past = [_opened(local, deadline, b"one too many\n") for _ in range(REFUSED)]
            assert [answer for _, answer in past] == [b""] * REFUSED
            # Those held are still relayed; one closed makes room for a new one.
            assert echo_back(held[0][0], b"still\n") == b"still\n"
            held[0][0].close()
            wait_for(lambda: len(_forwards_closed(proxied.access_request.pk)) == 2, what="the closed forward on record")
            again = _opened(local, deadline, b"room again\n")
            assert again[1] == b"room again\n"
            for conn, _ in [*held, *past, again]:
                conn.close()
        assert process.stderr is not None
        stderr = process.stderr.read()
    assert b"administratively prohibited" in stderr, stderr
    assert f"at most {MAX_FORWARDS} forwarded connections".encode() in stderr, stderr
    # Written once, with why; each refusal after it in the window counted under its key.
    refused = wait_for(lambda: refusals(proxied.access_request.pk, "forward"), what="the refusal on record")
    [entry] = refused
    assert entry.detail["reason"] == "too many forwards"
    assert entry.detail["open"] == MAX_FORWARDS and entry.detail["max_forwards"] == MAX_FORWARDS
    assert entry.actor_id == proxied.alice.pk
    tally = wait_for(
        lambda: RefusalTally.objects.filter(
            action="proxy.refused", reason=entry.detail["refusal_key"], count__gte=REFUSED
        ).first(),
        what="every refusal counted",
    )
    assert tally.count == REFUSED and tally.source == f"user:{proxied.alice.pk}"
    assert len(refusals(proxied.access_request.pk, "forward")) == 1


@pytest.mark.parametrize("value", ["0", "-1"])
def test_the_limit_is_at_least_one(value: str) -> None:
    started = start_production("import passport_portal.settings", PASSPORT_PROXY_MAX_FORWARDS=value)
    assert started.returncode != 0
    assert "PASSPORT_PROXY_MAX_FORWARDS must be at least 1" in started.stderr
