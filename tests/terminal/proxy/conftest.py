"""The real stack for the CLI proxy: a daphne serving the portal (WebSockets need ASGI), the real
worker and devcloud, the real `passport` CLI signed in against that daphne, and OpenSSH."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from django.conf import settings

from accounts.models import AwsAccount, User
from audit.models import LogbookEntry
from requests_app import services as request_services
from requests_app.models import AccessRequest, Grant, Instance, RequestStatus
from tests.cli.conftest import Cli
from tests.factories import make_membership, make_user
from tests.sshd import connect_when_listening, echo_back, stop_ssh
from tests.stack import WorkerProcess, daphne_running, free_port, wait_for


def in_one_refusal_window(seconds: float = 60) -> None:
    """Wait, if need be, until the next ``seconds`` fall in one refusal window (``audit.refusals``:
    they align to the epoch), so that a refusal repeated in them is one entry and a count."""
    window = settings.PASSPORT_REFUSAL_WINDOW_SECONDS
    left = window - time.time() % window
    if left < seconds:
        time.sleep(left + 1)


@pytest.fixture
def daphne_settings() -> dict[str, str]:
    """Settings a module's daphne takes besides the proxy's own: a module overrides this fixture."""
    return {}


@pytest.fixture
def daphne(worker: WorkerProcess, tmp_path: Path, daphne_settings: dict[str, str]) -> Iterator[str]:
    env = {
        **worker.env,
        "PASSPORT_VAR_DIR": str(tmp_path / "var"),
        "PASSPORT_RECORDING_CHUNK_SECONDS": "1",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
        **daphne_settings,
    }
    with daphne_running(env, tmp_path / "daphne.log") as url:
        yield url


class CliPeer:
    """The CLI's WebSocket, as the proxy sees it: what it was sent and the codes it was closed with."""

    def __init__(self) -> None:
        self.texts: list[dict[str, str]] = []
        self.codes: list[int] = []

    async def send_bytes(self, data: bytes) -> None:
        pass

    async def send_text(self, text: str) -> None:
        self.texts.append(json.loads(text))

    async def close(self, code: int) -> None:
        self.codes.append(code)


@dataclass
class Proxied:
    """alice's active request on web-1, her CLI signed in to the daphne, and her ssh config."""

    cli: Cli
    alice: User
    approver: User
    access_request: AccessRequest
    grant: Grant
    config: str

    def ssh(self, *args: str, host: str = "web-1", stdin: Any = subprocess.DEVNULL, timeout: float = 60) -> Any:
        return subprocess.run(
            ["ssh", "-F", self.config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", *args[:-1], host, *args[-1:]],
            env=self.cli.env, capture_output=True, timeout=timeout, stdin=stdin, check=False,
        )  # fmt: skip


def active_request(account: AwsAccount, requester: User, approver: User, names: list[str]) -> AccessRequest:
    instances = [Instance.objects.get(account=account, name=name) for name in names]
    access_request = request_services.access_request_create(
        requester=requester, account=account, instances=instances, reason="proxy test"
    )
    request_services.access_request_approve(access_request=access_request, approver=approver)
    wait_for(lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE, what="active")
    access_request.refresh_from_db()
    return access_request


def signed_in_cli(daphne: str, tmp_path: Path, user: User, name: str = "workstation") -> Cli:
    config = tmp_path / name / "config"
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(config),
        "HOME": str(tmp_path / name),
        "PASSPORT_URL": daphne,
        "BROWSER": "true",
    }
    env.pop("PASSPORT_CONFIG_DIR", None)
    env.pop("SSH_AUTH_SOCK", None)
    cli = Cli(env=env, config_dir=config / "passport")
    login = cli.login(user)
    assert login.returncode == 0, login.stderr
    return cli


def proxied_request(account: AwsAccount, daphne: str, tmp_path: Path) -> Proxied:
    """alice's request on web-1 of ``account``, approved and active, her CLI signed in to ``daphne``."""
    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, account, "admin")
    make_membership(approver, account, "admin", can_approve=True)
    access_request = active_request(account, alice, approver, ["web-1"])
    cli = signed_in_cli(daphne, tmp_path, alice)
    config = cli.json("ssh-config")["path"]
    grant = Grant.objects.select_related("instance", "request").get(request=access_request)
    return Proxied(cli=cli, alice=alice, approver=approver, access_request=access_request, grant=grant, config=config)


@pytest.fixture
def proxied(prod: AwsAccount, daphne: str, tmp_path: Path) -> Proxied:
    return proxied_request(prod, daphne, tmp_path)


def proxy_entries(request_id: int, action: str, *, count: int, **detail: object) -> list[LogbookEntry]:
    """The request's ``action`` entries (with these ``detail`` values), oldest first, once at least
    ``count`` are written; fails if they are not within the wait. The proxy writes what it saw of a
    connection (``file.transferred``, ``file.changed``, ``transfer.unobserved``, ``proxy.refused``...)
    off its event loop (``ProxyConnection.log``), so an entry may land after the client exited and
    its session was sealed: read at once, it may not be there yet."""
    entries = LogbookEntry.objects.filter(
        action=action, request_id=request_id, **{f"detail__{key}": value for key, value in detail.items()}
    ).order_by("id")
    found: list[LogbookEntry] = wait_for(
        lambda: written if len(written := list(entries)) >= count else None, what=f"{count} {action} entries"
    )
    return found


WITHDRAWN = "destination withdrawn"


def withdrawn_forwards(request_id: int) -> list[LogbookEntry]:
    """The request's forwards the proxy closed because their target was taken off the account."""
    return list(LogbookEntry.objects.filter(action="forward.closed", request_id=request_id, detail__reason=WITHDRAWN))


@dataclass
class OpenForwards:
    """An ``ssh -N`` client with ``-L`` forwards open through the proxy, one connection through each."""

    process: subprocess.Popen[bytes]
    connections: list[socket.socket]
    local_ports: list[int]
    deadline: float


@contextmanager
def forwards_open(proxied: Proxied, *targets: str) -> Iterator[OpenForwards]:
    """`ssh -N` to web-1 forwarding a local port to each of ``targets`` (``host:port`` as the instance
    sees them), one connection through each carrying b"before\\n" there and back; the ssh client
    stopped after the block."""
    local_ports = [free_port() for _ in targets]
    forwards = [arg for port, target in zip(local_ports, targets, strict=True) for arg in ("-L", f"{port}:{target}")]
    process = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-N", *forwards, "web-1"],
        env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        connections = [connect_when_listening(port, deadline) for port in local_ports]
        for connection in connections:
            assert echo_back(connection, b"before\n") == b"before\n"
        yield OpenForwards(process=process, connections=connections, local_ports=local_ports, deadline=deadline)
        for connection in connections:
            connection.close()
    finally:
        stop_ssh(process)


@dataclass
class TwoForwards:
    """Two ``ssh -L`` forwards open through the proxy: one whose target stays, one whose target is taken."""

    kept: socket.socket
    taken: socket.socket
    to_taken: int
    deadline: float

    def taken_again(self) -> socket.socket:
        """A new connection to the taken forward's local port."""
        return connect_when_listening(self.to_taken, self.deadline)


@contextmanager
def two_forwards(proxied: Proxied, kept: str, taken: str) -> Iterator[TwoForwards]:
    """``forwards_open`` to ``kept`` and to ``taken``."""
    with forwards_open(proxied, kept, taken) as opened:
        kept_conn, taken_conn = opened.connections
        yield TwoForwards(kept=kept_conn, taken=taken_conn, to_taken=opened.local_ports[1], deadline=opened.deadline)


def _collect(stream: IO[bytes] | None, into: bytearray) -> threading.Thread:
    """Read ``stream`` into ``into`` as it comes, in a thread of its own."""
    assert stream is not None

    def read() -> None:
        while chunk := os.read(stream.fileno(), 4096):
            into.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@dataclass
class EchoingCommand:
    """``ssh -T web-1`` through the proxy running a command that prints "started", then answers each
    line it reads with ``got-<line>``: its client, and what it has written to stdout and stderr so far."""

    process: subprocess.Popen[bytes]
    out: bytearray
    err: bytearray

    def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def relays(self, line: bytes) -> None:
        """Send ``line`` and wait for the instance's answer to it."""
        self.send(line)
        wait_for(lambda: b"got-" + line in self.out, what="the session relaying")

    def wait_ended(self) -> None:
        wait_for(lambda: self.process.poll() is not None, timeout=30, what="ssh to end")


@contextmanager
def echoing_command(proxied: Proxied) -> Iterator[EchoingCommand]:
    """An ``EchoingCommand`` once it has started; killed after the block if it is still running."""
    process = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-T", "web-1",
         'echo started; while read line; do echo "got-$line"; done'],
        env=proxied.cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = bytearray(), bytearray()
    readers = [_collect(process.stdout, out), _collect(process.stderr, err)]
    try:
        wait_for(lambda: b"started" in out, what="the command running")
        yield EchoingCommand(process=process, out=out, err=err)
    finally:
        if process.poll() is None:
            process.kill()
        for reader in readers:
            reader.join(timeout=5)
