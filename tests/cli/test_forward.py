"""`passport forward INSTANCE LOCAL:REMOTE` on the real stack (devcloud serving smux, a Celery worker):
many TCP connections through ONE Session Manager session, a destination that hangs up and is
dialled again, a port the account does not open, and SIGTERM."""

from __future__ import annotations

import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from tests.cli.conftest import Cli, active_request_from_cli, forwarding
from tests.stack import Cloud

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker"), pytest.mark.timeout(300)]


class _EchoOrHangUp(socketserver.BaseRequestHandler):
    """Echoes; on b"quit" answers b"bye" and closes. Counts the connections it accepted."""

    accepted = 0
    lock = threading.Lock()

    def handle(self) -> None:
        with _EchoOrHangUp.lock:
            _EchoOrHangUp.accepted += 1
        while data := self.request.recv(65536):
            if data == b"quit":
                self.request.sendall(b"bye")
                return
            self.request.sendall(data)


@contextmanager
def _echo_or_hang_up_server() -> Iterator[int]:
    """An ``_EchoOrHangUp`` listener on loopback, its count of connections reset; yields its port."""
    _EchoOrHangUp.accepted = 0
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoOrHangUp)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _round_trip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def _read_to_eof(conn: socket.socket) -> bytes:
    received = b""
    while chunk := conn.recv(4096):
        received += chunk
    return received


def test_forward_carries_many_connections_over_one_session(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    access_request = active_request_from_cli(cli, prod, aws.instance_id("win-ad-1"), "fwd")

    with _echo_or_hang_up_server() as remote:
        refused = cli.run("forward", "win-ad-1", f"0:{remote}")
        assert refused.returncode == 5, refused.stderr
        assert f"Port {remote} is not open" in refused.stderr

        AwsAccount.objects.filter(pk=prod.pk).update(extra_forward_ports=[remote])
        with forwarding(cli, "win-ad-1", remote) as (process, port):
            payloads = [bytes([97 + n]) * (30_000 + 5_000 * n) for n in range(5)]
            with ThreadPoolExecutor(len(payloads)) as pool:
                assert list(pool.map(lambda p: _round_trip(port, p), payloads)) == payloads
            # The destination hangs up on one connection: that one ends, the next is dialled again.
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                conn.sendall(b"quit")
                assert _read_to_eof(conn) == b"bye"
            assert _round_trip(port, b"after the hang-up") == b"after the hang-up"
            assert _EchoOrHangUp.accepted == 7
    stderr = process.stderr.read() if process.stderr else ""
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "failed" not in stderr, stderr
    # Seven connections, one Session Manager session.
    assert LogbookEntry.objects.filter(action="session.started", request_id=access_request.pk).count() == 1


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="connects as another user with setpriv: Linux, root",
)
def test_forward_refuses_another_user_of_the_machine(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    """127.0.0.1 is open to every local user: another one's connection would ride alice's session
    under her name. It is closed at once, with a line on stderr; alice's own (IPv4 or IPv6) are served."""
    access_request = active_request_from_cli(cli, prod, aws.instance_id("win-ad-1"), "fwd")

    with _echo_or_hang_up_server() as remote:
        AwsAccount.objects.filter(pk=prod.pk).update(extra_forward_ports=[remote])
        with forwarding(cli, "win-ad-1", remote) as (process, port):
            other = subprocess.run(
                [*AS_NOBODY, sys.executable, "-c",
                 "import socket, sys\n"
                 f"conn = socket.create_connection(('127.0.0.1', {port}), timeout=30)\n"
                 "conn.sendall(b'from uid 65534')\n"
                 "try:\n    print(repr(conn.recv(100)))\n"
                 "except ConnectionResetError:\n    print('reset')\n"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert other.returncode == 0, other.stderr
            assert other.stdout.strip() in ("b''", "reset"), other.stdout
            assert _round_trip(port, b"from alice") == b"from alice"
            with socket.socket(socket.AF_INET6) as conn:  # listed in /proc/net/tcp6 as ::ffff:127.0.0.1
                conn.settimeout(30)
                conn.connect(("::ffff:127.0.0.1", port))
                conn.sendall(b"quit")
                assert _read_to_eof(conn) == b"bye"
    stderr = process.stderr.read() if process.stderr else ""
    assert process.returncode == 143, stderr
    assert (
        f"passport: refused a connection to 127.0.0.1:{port} from another user of this machine (uid 65534)\n" in stderr
    ), stderr
    assert "Traceback" not in stderr, stderr
    assert _EchoOrHangUp.accepted == 2  # alice's two; nothing of the other user's reached the instance
    assert LogbookEntry.objects.filter(action="session.started", request_id=access_request.pk).count() == 1
